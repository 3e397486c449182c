"""Payout delivery end to end (DOMAIN.md §4–5): the real worker, the sandbox over HTTP, PostgreSQL.

Purchases go through the signed partner API; the worker delivers; the sandbox's own books are
the witness of what was paid.
"""

from decimal import Decimal

import pytest

from wallets.models import Payout, PayoutAttempt
from wallets.tests.conftest import wait_for, wait_terminal

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PATH = "/api/v1/cashbacks"


@pytest.fixture
def buy(api, ladder):
    """Posts a purchase whose payout is exactly `total` (a 100% cashback rule), returns the payout id."""
    from datetime import timedelta

    from django.utils import timezone

    from cashback.models import CashbackRule

    CashbackRule.objects.create(name="all of it", percentage=Decimal("100"), valid_from=timezone.now() - timedelta(days=1))
    counter = iter(range(1, 10**6))

    def post(wallet: str, amount: str, msisdn: str | None = None) -> int:
        n = next(counter)
        response = api.post(PATH, {"partner_ref": f"E2E-{n}", "msisdn": msisdn or f"62812{n:08d}", "quantity": 1, "amount": amount, "wallet": wallet})
        assert response.status_code == 201, response.content
        return Payout.objects.get(transaction__kezbek_ref=response.json()["kezbek_ref"]).pk

    return post


def credits_for(sandbox, payout: Payout) -> list[dict]:
    if payout.provider and payout.provider.code == "GOPAIDH2H":
        return [c for c in sandbox.ledger("GOPAIDH2H") if c["msisdn"] == payout.msisdn]
    return [c for c in sandbox.ledger() if c["client_ref"] and c["client_ref"].startswith(payout.transaction.kezbek_ref)]


@pytest.mark.parametrize(
    "wallet, amount, provider, fee, dearest",
    [
        ("LSAJA", "10000.00", "MTRANS", "550.00", "1000.00"),
        ("LSAJA", "1000000.00", "XENIT", "750.00", "5500.00"),  # the percent fee makes MTRANS lose
        ("GPAID", "10000.00", "GOPAIDH2H", "300.00", "750.00"),
        ("JOSVO", "10000.00", "MTRANS", "550.00", "900.00"),
        ("JOSVO", "200000.00", "XENIT", "750.00", "1500.00"),
    ],
)
def test_each_wallet_is_paid_through_its_cheapest_route(sandbox, worker, routes, breakers_closed, buy, wallet, amount, provider, fee, dearest):
    payout_id = buy(wallet, amount)
    wait_terminal([payout_id], timeout=30)
    payout = Payout.objects.select_related("provider", "transaction").get(pk=payout_id)
    assert (payout.status, payout.provider.code, payout.fee, payout.dearest_fee) == ("SUCCEEDED", provider, Decimal(fee), Decimal(dearest))
    credits = credits_for(sandbox, payout)
    assert [(c["provider"], c["amount"], c["wallet"], c["msisdn"]) for c in credits] == [(provider, amount, wallet, payout.msisdn)]


def test_a_provider_refusing_everything_fails_over(sandbox, worker, routes, breakers_closed, buy, api):
    sandbox.faults({"MTRANS": {"refuse_rate": 1}})
    ids = [buy("LSAJA", "10000.00") for _ in range(4)]
    wait_terminal(ids, timeout=40)
    for payout in Payout.objects.filter(pk__in=ids).select_related("provider", "transaction"):
        assert (payout.status, payout.provider.code) == ("SUCCEEDED", "XENIT")
        outcomes = list(payout.attempt_rows.filter(kind="SEND").values_list("provider__code", "outcome"))
        assert outcomes == [("MTRANS", "REFUSED"), ("XENIT", "CREDITED")]
        assert [c["provider"] for c in credits_for(sandbox, payout)] == ["XENIT"]
    # refusals are about accounts, not the provider's health: the breaker stays closed
    from wallets.breakers import breaker_state

    assert breaker_state("MTRANS") == "closed"
    # and the partner sees the route taken
    ref = Payout.objects.get(pk=ids[0]).transaction.kezbek_ref
    assert api.get(f"{PATH}/{ref}").json()["payout"] == {"status": "SUCCEEDED", "provider": "XENIT", "flags": []}
    assert sandbox.ledger("MTRANS") == []


def test_every_route_refusing_fails_the_payout_and_pays_nothing(sandbox, worker, routes, breakers_closed, buy):
    sandbox.faults({code: {"refuse_rate": 1} for code in ["GOPAIDH2H", "MTRANS", "XENIT"]})
    payout_id = buy("GPAID", "5000.00")
    wait_terminal([payout_id], timeout=30)
    payout = Payout.objects.get(pk=payout_id)
    assert payout.status == "FAILED"
    assert sorted(payout.attempt_rows.values_list("provider__code", flat=True)) == ["GOPAIDH2H", "MTRANS", "XENIT"]
    assert sandbox.ledger() == []


def test_a_provider_down_opens_its_breaker_and_closes_after_recovery(sandbox, worker, routes, breakers_closed, buy):
    from wallets.breakers import breaker_state

    sandbox.faults({"MTRANS": {"unavailable_rate": 1}})
    first = [buy("LSAJA", "10000.00") for _ in range(6)]
    wait_terminal(first, timeout=40)
    assert breaker_state("MTRANS") == "open"
    assert set(Payout.objects.filter(pk__in=first).values_list("status", "provider__code")) == {("SUCCEEDED", "XENIT")}
    mtrans_sends = PayoutAttempt.objects.filter(provider__code="MTRANS", kind="SEND").exclude(outcome="BREAKER_OPEN").count()
    # the breaker opened after fail_max = 3 unavailable answers; at most the other pool processes'
    # requests already in flight then still reached MTRANS
    assert 3 <= mtrans_sends <= 3 + worker.concurrency - 1
    # while it is open, new payouts do not go near MTRANS at all
    during = [buy("LSAJA", "10000.00") for _ in range(3)]
    wait_terminal(during, timeout=20)
    assert breaker_state("MTRANS") == "open"
    assert not PayoutAttempt.objects.filter(payout_id__in=during, provider__code="MTRANS").exists()
    # recovery: the provider answers again; after the reset timeout one trial call closes the breaker
    sandbox.faults({"MTRANS": {"unavailable_rate": 0}})
    wait_for(lambda: breaker_state("MTRANS") != "open" or _cooled_down(), 10, "the breaker's reset timeout")
    later = buy("LSAJA", "10000.00")
    wait_terminal([later], timeout=30)
    assert Payout.objects.get(pk=later).provider.code == "MTRANS"
    assert breaker_state("MTRANS") == "closed"
    assert len(sandbox.ledger("MTRANS")) == 1


def _cooled_down():
    from wallets.breakers import breaker_is_open

    return not breaker_is_open("MTRANS")


def test_unknown_outcome_is_resolved_by_inquiry_and_never_paid_twice(sandbox, worker, routes, breakers_closed, buy):
    sandbox.faults({"MTRANS": {"unknown_rate": 1}})
    ids = [buy("LSAJA", "10000.00") for _ in range(6)]
    unknown_sends = PayoutAttempt.objects.filter(payout_id__in=ids, provider__code="MTRANS", kind="SEND", outcome="UNKNOWN")
    wait_for(lambda: unknown_sends.count() >= 3, 20, "three unknown outcomes at MTRANS")
    sandbox.faults({"MTRANS": {"unknown_rate": 0}})
    wait_terminal(ids, timeout=60)
    unknown_first = 0
    for payout in Payout.objects.filter(pk__in=ids).select_related("provider", "transaction"):
        assert payout.status == "SUCCEEDED"
        credits = credits_for(sandbox, payout)
        assert len(credits) == 1 and credits[0]["amount"] == "10000.00"
        # a route chosen just as the breaker opened is recorded BREAKER_OPEN: nothing was sent
        rows = list(payout.attempt_rows.exclude(outcome="BREAKER_OPEN").values_list("provider__code", "kind", "outcome"))
        if rows[0] == ("MTRANS", "SEND", "UNKNOWN"):
            unknown_first += 1
            # nothing was sent anywhere before MTRANS was asked what happened
            assert rows[1][:2] == ("MTRANS", "INQUIRY"), rows
        else:
            # the breaker had opened on the unknowns: later payouts went straight to the next route
            assert rows == [("XENIT", "SEND", "CREDITED")], rows
    assert unknown_first >= 3


def test_gopaid_unknown_goes_to_manual_review_and_is_never_resent(sandbox, worker, routes, breakers_closed, buy):
    sandbox.faults({"GOPAIDH2H": {"timeout_rate": 1, "timeout_ms": 1500}})
    payout_id = buy("GPAID", "5000.00")
    wait_terminal([payout_id], timeout=30)
    payout = Payout.objects.get(pk=payout_id)
    assert payout.status == "MANUAL_REVIEW"
    assert list(payout.attempt_rows.values_list("provider__code", "kind", "outcome")) == [("GOPAIDH2H", "SEND", "UNKNOWN")]
    wait_for(lambda: True, 2, "the sandbox's sleep to end")
    assert len([c for c in sandbox.ledger() if c["msisdn"] == payout.msisdn]) <= 1


def test_xenit_pending_is_finished_by_its_callback(sandbox, worker, routes, breakers_closed, buy):
    sandbox.faults({"XENIT": {"pending_rate": 1, "callback_delay_ms": 300}})
    payout_id = buy("LSAJA", "1000000.00")
    wait_terminal([payout_id], timeout=30)
    payout = Payout.objects.get(pk=payout_id)
    assert payout.status == "SUCCEEDED"
    kinds = list(payout.attempt_rows.values_list("kind", "outcome"))
    assert ("SEND", "PENDING") in kinds and ("CALLBACK", "CREDITED") in kinds
    assert not any(kind == "INQUIRY" for kind, _ in kinds)
    assert list(payout.events.values_list("to_status", flat=True))[-2:] == ["AWAITING_CALLBACK", "SUCCEEDED"]


def test_xenit_pending_without_callback_is_finished_by_inquiry(sandbox, worker, routes, breakers_closed, buy):
    sandbox.faults({"XENIT": {"pending_rate": 1, "callback_delay_ms": 300, "callback_drop_rate": 1}})
    payout_id = buy("LSAJA", "1000000.00")
    wait_terminal([payout_id], timeout=40)
    payout = Payout.objects.get(pk=payout_id)
    assert payout.status == "SUCCEEDED"
    assert list(payout.attempt_rows.values_list("kind", "outcome"))[-1] == ("INQUIRY", "CREDITED")
    assert len(credits_for(sandbox, payout)) == 1
