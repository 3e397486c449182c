"""Webhooks to partners: how answers are classified and how retries back off (no I/O)."""

import pytest

from partners.webhooks import classify, retry_delay


@pytest.fixture
def fast_webhooks(settings):
    settings.CEZBEK_WEBHOOK_RETRY_BASE_SECONDS = 10
    settings.CEZBEK_WEBHOOK_RETRY_MAX_SECONDS = 1000
    return settings


@pytest.mark.parametrize(
    "status, outcome",
    [(200, "DELIVERED"), (201, "DELIVERED"), (204, "DELIVERED"), (400, "STOPPED"), (401, "STOPPED"), (404, "STOPPED"),
     (410, "STOPPED"), (422, "STOPPED"), (408, "RETRY"), (429, "RETRY"), (500, "RETRY"), (502, "RETRY"), (503, "RETRY"),
     (301, "RETRY"), (302, "RETRY")],
)
def test_answers_are_classified(status, outcome):
    assert classify(status) == outcome


def test_back_off_doubles_with_jitter_up_to_the_cap(fast_webhooks):
    for attempt, ceiling in [(1, 10), (2, 20), (3, 40), (4, 80), (7, 640), (8, 1000), (20, 1000)]:
        delays = [retry_delay(attempt=attempt) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (attempt, min(delays), max(delays))
        assert max(delays) - min(delays) > ceiling / 10  # jittered, not one fixed value
    assert retry_delay(attempt=1, retry_after=120) >= 120  # a partner's Retry-After is honoured
    assert retry_delay(attempt=1, retry_after=99999) <= 1000  # up to the cap


