"""Risk control (DOMAIN.md §8): a payout that would take an MSISDN over the velocity limit is HELD."""

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from cashback.tests.test_concurrency import run_concurrently, signed_post
from wallets import services
from wallets.models import Payout, PayoutEvent

PATH = "/api/v1/cashbacks"
MSISDN = "628118770510"


def purchase(ref: str, amount: str = "100000.00", msisdn: str = MSISDN) -> dict:
    # the global rule pays 1 %: 100,000.00 → a payout of 1,000.00
    return {"partner_ref": ref, "msisdn": msisdn, "quantity": 1, "amount": amount, "wallet": "LSAJA"}


@pytest.fixture
def limit(settings):
    settings.CEZBEK_VELOCITY_LIMIT = Decimal("2500.00")
    settings.CEZBEK_VELOCITY_WINDOW_SECONDS = 600
    return settings


def buy(api, ref, **kwargs):
    response = api.post(PATH, purchase(ref, **kwargs))
    assert response.status_code == 201, response.content
    return response.json()


@pytest.mark.django_db
def test_the_payout_that_would_exceed_the_limit_is_held_and_flagged(api, wallets, ladder, global_rule, limit, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as queued:
        first, second, third = (buy(api, f"V-{i}") for i in range(3))
    assert first["payout"] == {"status": "PENDING", "provider": None, "flags": []}
    assert second["payout"] == {"status": "PENDING", "provider": None, "flags": []}  # 2,000.00 ≤ 2,500.00
    assert third["payout"] == {"status": "HELD", "provider": None, "flags": ["velocity"]}  # 3,000.00 > 2,500.00
    assert len(queued) == 2  # nothing is sent for the held one
    held = Payout.objects.get(transaction__partner_ref="V-2")
    assert (held.status, held.flags) == ("HELD", ["velocity"])
    event = PayoutEvent.objects.get(payout=held)
    assert event.to_status == "HELD" and "2000.00" in event.note and "2500.00" in event.note
    # the detail shows it too
    assert api.get(f"{PATH}/{third['kezbek_ref']}").json()["payout"]["flags"] == ["velocity"]


@pytest.mark.django_db
def test_exactly_at_the_limit_is_not_held(api, wallets, ladder, global_rule, settings):
    settings.CEZBEK_VELOCITY_LIMIT = Decimal("2000.00")
    assert [buy(api, f"E-{i}")["payout"]["status"] for i in range(3)] == ["PENDING", "PENDING", "HELD"]


@pytest.mark.django_db
def test_held_payouts_count_failed_and_cancelled_do_not(api, make_partner, client, wallets, ladder, global_rule, limit):
    buy(api, "A")
    buy(api, "B")
    assert buy(api, "C")["payout"]["status"] == "HELD"  # 2,000 + 1,000
    assert buy(api, "D")["payout"]["status"] == "HELD"  # the held 1,000 counts too: 3,000 + 1,000
    Payout.objects.filter(transaction__partner_ref__in=["A", "C", "D"]).update(status="FAILED")
    Payout.objects.filter(transaction__partner_ref="B").update(status="CANCELLED")
    _, other_credential = make_partner("TOKOBAJU")  # a fifth purchase with LAJADA would earn a reward
    other = type(api)(client, other_credential.key_id, other_credential.secret)
    assert buy(other, "E")["payout"]["status"] == "PENDING"  # nothing counted: 0 + 1,000


@pytest.mark.django_db
def test_only_the_rolling_window_counts(api, wallets, ladder, global_rule, limit):
    buy(api, "OLD-1")
    buy(api, "OLD-2")
    Payout.objects.update(created_at=Payout.objects.get(transaction__partner_ref="OLD-1").created_at - timedelta(seconds=601))
    assert buy(api, "NEW")["payout"]["status"] == "PENDING"


@pytest.mark.django_db
def test_the_limit_is_per_msisdn_across_partners(api, make_partner, wallets, ladder, global_rule, limit, client):
    _, other_credential = make_partner("TOKOBAJU")
    other = type(api)(client, other_credential.key_id, other_credential.secret)
    buy(api, "P1")
    buy(other, "P2")
    assert buy(other, "P3")["payout"]["status"] == "HELD"
    assert buy(api, "P4", msisdn="628118770511")["payout"]["status"] == "PENDING"  # another customer


@pytest.mark.django_db
def test_release_sends_a_held_payout_and_cancel_ends_it(api, wallets, ladder, global_rule, limit, django_capture_on_commit_callbacks):
    operator = get_user_model().objects.create_user("ops", is_staff=True)
    for i in range(4):
        buy(api, f"R-{i}")
    held = list(Payout.objects.filter(status="HELD").order_by("id"))
    assert len(held) == 2
    with django_capture_on_commit_callbacks() as queued:
        services.payout_release(payout=held[0], actor=operator, note="customer verified by phone")
    assert len(queued) == 1
    held[0].refresh_from_db()
    assert held[0].status == "PENDING" and held[0].flags == ["velocity"]  # the flag stays: why it waited
    event = held[0].events.latest("id")
    assert (event.from_status, event.to_status, event.actor, event.note) == ("HELD", "PENDING", operator, "customer verified by phone")
    services.payout_cancel(payout=held[1], actor=operator, note="fraud")
    held[1].refresh_from_db()
    assert held[1].status == "CANCELLED"
    with pytest.raises(Exception, match="Only a HELD payout"):
        services.payout_release(payout=held[1], actor=operator)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_purchases_through_four_partners_never_slip_past_the_limit(make_partner, wallets, ladder, global_rule, settings):
    assert connection.vendor == "postgresql"
    settings.CEZBEK_VELOCITY_LIMIT = Decimal("5500.00")  # room for exactly five payouts of 1,000.00
    # four partners, three purchases each: no customer reaches a reward (the 5th purchase)
    credentials = [make_partner(code)[1] for code in ("LAJADA", "TOKOBAJU", "SEPATU", "BUKUKU")]
    now = int(time.time())

    def post(i):
        credential = credentials[i % 4]
        return signed_post(credential.key_id, credential.secret, purchase(f"RACE-{i}"), now)

    results = run_concurrently(12, post)
    assert all(status == 201 for status, _ in results), results
    statuses = sorted(body["payout"]["status"] for _, body in results)
    assert statuses == ["HELD"] * 7 + ["PENDING"] * 5
    assert Payout.objects.filter(status="PENDING").count() == 5
