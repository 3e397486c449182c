"""The loyalty changelists as staff use them: find a customer by the number they give, filter by tier,
partner and expiry, and never edit the history."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from cashback.services import Purchase, transaction_record
from loyalty.models import JourneyEntry, LoyaltyState, RewardRule, TierLevel


def url(model, view: str, *args) -> str:
    return reverse(f"admin:loyalty_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def customers(wallets, ladder, make_partner, global_rule):
    """Two purchases at LAJADA by one customer, one at TOKMED by another; standings arranged around them."""
    lajada, _ = make_partner("LAJADA")
    tokmed, _ = make_partner("TOKMED")
    txns = []
    for partner, ref, msisdn in [
        (lajada, "INV/1", "628118770510"),
        (lajada, "INV/2", "628118770510"),
        (tokmed, "T-9", "628129990001"),
    ]:
        txn, created = transaction_record(
            partner=partner,
            purchase=Purchase(partner_ref=ref, msisdn=msisdn, quantity=1, amount=Decimal("100000.00"), wallet="LSAJA"),
        )
        assert created
        txns.append(txn)
    now = timezone.now()
    # A GOLD customer at LAJADA about to drop, one whose expiry the daily job has not applied yet
    gold_soon = LoyaltyState.objects.create(
        partner=lajada,
        msisdn="628170000001",
        tier=ladder["GOLD"],
        count=2,
        entered_at=now - timedelta(days=170),
        expires_at=now + timedelta(days=3),
    )
    silver_expired = LoyaltyState.objects.create(
        partner=tokmed,
        msisdn="628170000002",
        tier=ladder["SILVER"],
        count=1,
        entered_at=now - timedelta(days=100),
        expires_at=now - timedelta(days=10),
    )
    return {
        "lajada": lajada,
        "tokmed": tokmed,
        "txns": txns,
        "gold_soon": gold_soon,
        "silver_expired": silver_expired,
    }


def listed(client, model, **query) -> list:
    response = client.get(url(model, "changelist"), query)
    assert response.status_code == 200, (model, query)
    return list(response.context["cl"].result_list)


def test_states_are_found_by_the_number_as_the_customer_says_it(ops, customers):
    for typed in ["08118770510", "+628118770510", "628118770510", "8770510"]:
        assert [s.msisdn for s in listed(ops, LoyaltyState, q=typed)] == ["628118770510"], typed
    assert listed(ops, LoyaltyState, q="0899999999") == []


def test_states_filter_by_partner_tier_and_expiry(ops, customers, ladder):
    lajada, tokmed = customers["lajada"], customers["tokmed"]
    by_partner = {s.msisdn for s in listed(ops, LoyaltyState, partner__id__exact=lajada.pk)}
    assert by_partner == {"628118770510", "628170000001"}
    assert [s.msisdn for s in listed(ops, LoyaltyState, tier__id__exact=ladder["GOLD"].pk)] == ["628170000001"]
    assert [s.pk for s in listed(ops, LoyaltyState, expiry="7d")] == [customers["gold_soon"].pk]
    assert [s.pk for s in listed(ops, LoyaltyState, expiry="expired")] == [customers["silver_expired"].pk]
    # BRONZE never expires: the two customers who just bought
    assert {s.msisdn for s in listed(ops, LoyaltyState, expiry="never")} == {"628118770510", "628129990001"}
    assert {s.msisdn for s in listed(ops, LoyaltyState, q="TOKMED")} == {"628129990001", "628170000002"}
    assert listed(ops, LoyaltyState, partner__id__exact=tokmed.pk, tier__id__exact=ladder["GOLD"].pk) == []
    # the date hierarchy drills into the day of last activity
    today = timezone.localdate()
    days = {"updated_at__year": today.year, "updated_at__month": today.month, "updated_at__day": today.day}
    assert len(listed(ops, LoyaltyState, **days)) == 4


def test_journey_is_found_by_number_or_reference_and_filtered_by_partner(ops, customers):
    first, second, tokmed_txn = customers["txns"]
    by_number = listed(ops, JourneyEntry, q="08118770510")
    assert {e.transaction_id for e in by_number} == {first.pk, second.pk}
    assert [e.transaction_id for e in listed(ops, JourneyEntry, q=second.kezbek_ref)] == [second.pk]
    assert [e.transaction_id for e in listed(ops, JourneyEntry, q="T-9")] == [tokmed_txn.pk]
    by_partner = listed(ops, JourneyEntry, state__partner__id__exact=customers["tokmed"].pk)
    assert [e.transaction_id for e in by_partner] == [tokmed_txn.pk]
    # the date hierarchy drills into the day of the change
    today = timezone.localdate()
    days = {"created_at__year": today.year, "created_at__month": today.month, "created_at__day": today.day}
    assert len(listed(ops, JourneyEntry, **days)) == 3
    assert listed(ops, JourneyEntry, created_at__year=today.year - 1) == []


def test_history_is_read_only_even_for_operations(ops, customers):
    state = customers["gold_soon"]
    entry = JourneyEntry.objects.order_by("pk").first()
    assert ops.get(url(LoyaltyState, "change", state.pk)).status_code == 200
    assert ops.post(url(LoyaltyState, "change", state.pk), {"count": "99", "tier": "1"}).status_code == 403
    assert ops.post(url(JourneyEntry, "change", entry.pk), {"reward": "1000000.00"}).status_code == 403
    assert ops.get(url(LoyaltyState, "add")).status_code == 403
    assert ops.post(url(JourneyEntry, "delete", entry.pk), {"post": "yes"}).status_code == 403
    state.refresh_from_db()
    entry.refresh_from_db()
    assert (state.count, state.tier.name, entry.reward) == (2, "GOLD", Decimal("0.00"))


def test_rewards_list_filters_by_tier_and_refuses_a_second_live_nth(ops, ladder):
    silver = ladder["SILVER"]
    assert [(r.nth, r.reward) for r in listed(ops, RewardRule, tier__id__exact=silver.pk)] == [
        (5, Decimal("10000.00")),
        (10, Decimal("25000.00")),
    ]
    response = ops.post(url(RewardRule, "add"), {"tier": silver.pk, "nth": "5", "reward": "1.00"})
    assert response.status_code == 200
    assert "Another live reward rule already has this tier and nth." in response.content.decode()
    assert RewardRule.objects.filter(tier=silver).count() == 2
    response = ops.post(url(RewardRule, "add"), {"tier": silver.pk, "nth": "7", "reward": "15000.00"})
    assert response.status_code == 302
    assert RewardRule.objects.get(tier=silver, nth=7).reward == Decimal("15000.00")


def test_finance_read_the_ladder_but_cannot_change_it(finance, ladder):
    bronze = ladder["BRONZE"]
    assert finance.get(url(TierLevel, "change", bronze.pk)).status_code == 200
    form = {
        "name": "BRONZE",
        "rank": "1",
        "promote_after": "1",
        "rewards-TOTAL_FORMS": "0",
        "rewards-INITIAL_FORMS": "0",
    }
    assert finance.post(url(TierLevel, "change", bronze.pk), form).status_code == 403
    assert (
        finance.post(url(RewardRule, "add"), {"tier": bronze.pk, "nth": "2", "reward": "99999.00"}).status_code == 403
    )
    bronze.refresh_from_db()
    assert bronze.promote_after == 5 and not RewardRule.objects.filter(tier=bronze, nth=2).exists()
