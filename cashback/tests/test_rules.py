"""Cashback rules (DOMAIN.md §1): matching, precedence, rounding, caps, validity."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from cashback.models import CashbackRule
from cashback.selectors import cashback_rule_matching
from cashback.services import Purchase, cashback_compute, transaction_record

D = Decimal


@pytest.mark.parametrize(
    "amount, pct, cap, expected",
    [
        ("10050.50", "1", None, "100.51"),  # 100.505 → half-up
        ("10050.49", "1", None, "100.50"),  # 100.5049 → down
        ("750000.00", "1.50", "20000.00", "11250.00"),
        ("2000000.00", "1.50", "20000.00", "20000.00"),  # capped
        ("0.01", "50", None, "0.01"),  # 0.005 → 0.01
        ("0.01", "49.99", None, "0.00"),
        ("1000000000.00", "100", None, "1000000000.00"),
        ("333.33", "33.33", None, "111.10"),  # 111.098889
    ],
)
def test_cashback_rounds_half_up_then_caps(amount, pct, cap, expected):
    assert cashback_compute(amount=D(amount), percentage=D(pct), cap=D(cap) if cap else None) == D(expected)


@pytest.fixture
def now():
    return timezone.now()


def rule(now, **fields):
    defaults = dict(name="r", min_quantity=1, min_amount=D("0"), percentage=D("1.00"), valid_from=now - timedelta(days=1))
    defaults.update(fields)
    return CashbackRule.objects.create(**defaults)


def match(partner, now, quantity=1, amount="100.00"):
    return cashback_rule_matching(partner=partner, quantity=quantity, amount=D(amount), at=now)


def test_bounds_are_inclusive(db, partner, now):
    p = partner[0]
    r = rule(now, min_quantity=2, max_quantity=5, min_amount=D("500000.00"), max_amount=D("1499999.99"))
    assert match(p, now, 2, "500000.00") == r
    assert match(p, now, 5, "1499999.99") == r
    assert match(p, now, 1, "500000.00") is None
    assert match(p, now, 6, "500000.00") is None
    assert match(p, now, 2, "499999.99") is None
    assert match(p, now, 2, "1500000.00") is None


def test_empty_max_is_unbounded(db, partner, now):
    r = rule(now, min_quantity=3, min_amount=D("10"))
    assert match(partner[0], now, 10000, "1000000000.00") == r


def test_partner_rule_beats_global_even_with_lower_percentage(db, partner, make_partner, now):
    p = partner[0]
    other, _ = make_partner("TOKMED")
    rule(now, name="global", percentage=D("5.00"))
    mine = rule(now, name="mine", partner=p, percentage=D("0.50"))
    rule(now, name="theirs", partner=other, percentage=D("9.00"))
    assert match(p, now) == mine


def test_then_higher_percentage_then_lower_id(db, partner, now):
    first = rule(now, name="a", percentage=D("2.00"))
    rule(now, name="b", percentage=D("2.00"))
    rule(now, name="c", percentage=D("1.00"))
    assert match(partner[0], now) == first
    best = rule(now, name="d", percentage=D("3.00"))
    assert match(partner[0], now) == best


def test_validity_window_and_active_flag(db, partner, now):
    p = partner[0]
    rule(now, name="future", valid_from=now + timedelta(days=2))
    rule(now, name="past", valid_from=now - timedelta(days=10), valid_until=now - timedelta(seconds=1))
    rule(now, name="inactive", active=False)
    rule(now, name="archived", archived=True)
    assert match(p, now) is None
    edge = rule(now, name="edge", valid_from=now, valid_until=now + timedelta(days=1))
    assert match(p, now) == edge  # valid_from inclusive
    assert match(p, now + timedelta(days=1)) == edge  # valid_until inclusive


def test_no_rule_gives_zero_and_still_counts(db, partner, wallets, ladder):
    txn, created = transaction_record(
        partner=partner[0], purchase=Purchase(partner_ref="x", msisdn="628118770510", quantity=1, amount=D("100.00"), wallet="LSAJA")
    )
    assert created and txn.cashback == D("0.00") and txn.total == D("0.00") and txn.rule is None
    assert txn.tier_count == 1


def test_cap_applies_through_the_service(db, partner, wallets, ladder, now):
    rule(now, percentage=D("10.00"), max_cashback=D("12345.67"))
    txn, _ = transaction_record(
        partner=partner[0], purchase=Purchase(partner_ref="x", msisdn="628118770510", quantity=1, amount=D("999999.99"), wallet="LSAJA")
    )
    assert txn.cashback == D("12345.67")
    assert txn.payout.amount == D("12345.67")
