"""The ladder's arithmetic (DOMAIN.md §2), pure, with the demo ladder's numbers."""

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from loyalty import rules

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
BRONZE = rules.Rung(1, "BRONZE", 1, 5, None)
SILVER = rules.Rung(2, "SILVER", 2, 10, 90)
GOLD = rules.Rung(3, "GOLD", 3, None, 180)
LADDER = rules.Ladder(
    rungs=(BRONZE, SILVER, GOLD),
    rewards={(1, 5): Decimal("5000"), (2, 5): Decimal("10000"), (2, 10): Decimal("25000"), (3, 5): Decimal("25000"), (3, 10): Decimal("50000")},
)


def test_new_customer_starts_on_rank_one():
    s = rules.start(LADDER, T0)
    assert (s.rung, s.count, s.entered_at, s.expires_at) == (BRONZE, 0, T0, None)


def test_walk_up_the_ladder_with_rewards():
    s = rules.start(LADDER, T0)
    rewards = []
    for n in range(1, 16):
        s, steps, reward = rules.purchase(LADDER, s, T0 + timedelta(days=n))
        rewards.append((n, s.rung.name, s.count, reward))
    assert rewards[4] == (5, "SILVER", 0, Decimal("5000"))
    assert rewards[9] == (10, "SILVER", 5, Decimal("10000"))
    assert rewards[14] == (15, "GOLD", 0, Decimal("25000"))
    assert s.expires_at == T0 + timedelta(days=15 + 180)
    assert sum(r for *_, r in rewards) == Decimal("40000")


def test_top_tier_never_promotes_and_keeps_counting():
    s = rules.Standing(GOLD, 10, T0, T0 + timedelta(days=180))
    s, steps, reward = rules.purchase(LADDER, s, T0 + timedelta(days=1))
    assert (s.rung, s.count, reward, steps[-1].reason) == (GOLD, 11, Decimal("0"), "PURCHASE")


def test_expiry_drops_one_rank_per_period_from_the_old_expiry():
    # GOLD expired at day 180; SILVER then lasts 90 days from there (day 270); BRONZE never expires
    s = rules.Standing(GOLD, 3, T0, T0 + timedelta(days=180))
    after, steps = rules.expire(LADDER, s, T0 + timedelta(days=200))
    assert (after.rung, after.count, after.expires_at) == (SILVER, 0, T0 + timedelta(days=270))
    assert [st.reason for st in steps] == ["DEMOTED"]
    after, steps = rules.expire(LADDER, s, T0 + timedelta(days=270))  # expires_at ≤ now: inclusive
    assert (after.rung, after.expires_at) == (BRONZE, None)
    assert [(st.before.name, st.after.rung.name) for st in steps] == [("GOLD", "SILVER"), ("SILVER", "BRONZE")]


def test_expiry_outcome_does_not_depend_on_when_it_is_applied():
    s = rules.Standing(GOLD, 3, T0, T0 + timedelta(days=180))
    once, _ = rules.expire(LADDER, s, T0 + timedelta(days=400))
    stepwise, _ = rules.expire(LADDER, s, T0 + timedelta(days=200))
    stepwise, _ = rules.expire(LADDER, stepwise, T0 + timedelta(days=300))
    stepwise, _ = rules.expire(LADDER, stepwise, T0 + timedelta(days=400))
    assert once == stepwise


def test_purchase_applies_expiry_first():
    s = rules.Standing(SILVER, 4, T0, T0 + timedelta(days=90))
    after, steps, reward = rules.purchase(LADDER, s, T0 + timedelta(days=91))
    assert [st.reason for st in steps] == ["DEMOTED", "PURCHASE"]
    assert (after.rung, after.count, reward) == (BRONZE, 1, Decimal("0"))


def test_rank_one_with_validity_stays_one_step_per_period_passed():
    bronze30 = rules.Rung(1, "BRONZE", 1, 5, 30)
    ladder = rules.Ladder(rungs=(bronze30, SILVER))
    s = rules.Standing(bronze30, 4, T0, T0 + timedelta(days=30))
    after, steps = rules.expire(ladder, s, T0 + timedelta(days=95))
    assert (after.rung, after.count, after.entered_at, after.expires_at) == (bronze30, 0, T0 + timedelta(days=90), T0 + timedelta(days=120))
    assert [(st.reason, st.at, st.after.expires_at) for st in steps] == [
        ("DEMOTED", T0 + timedelta(days=day), T0 + timedelta(days=day + 30)) for day in (30, 60, 90)
    ]


def test_rank_one_outcome_does_not_depend_on_when_expiry_is_applied():
    # DOMAIN.md §2: the daily job's runs in between change nothing, state or journey
    bronze30 = rules.Rung(1, "BRONZE", 1, 5, 30)
    ladder = rules.Ladder(rungs=(bronze30, SILVER))
    s = rules.Standing(bronze30, 2, T0, T0 + timedelta(days=30))
    once, once_steps = rules.expire(ladder, s, T0 + timedelta(days=65))
    stepwise, first_steps = rules.expire(ladder, s, T0 + timedelta(days=31))
    stepwise, later_steps = rules.expire(ladder, stepwise, T0 + timedelta(days=65))
    assert once == stepwise
    assert once_steps == first_steps + later_steps
