"""`expire_tiers`: the daily job applies DOMAIN.md §2 step 2 set-based, and agrees with the purchase path."""

import io
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from cezbek import snapshots

from loyalty import rules
from loyalty.models import JourneyEntry, LoyaltyState, TierLevel
from loyalty.selectors import ladder_current, rung_for
from loyalty.services import tier_expire_all

# ladder_current (2), the tier map (1), then per pass: savepoint, select, one UPDATE per tier,
# one INSERT of the journey, release; the last pass finds nothing. GOLD expired for two periods
# takes two passes: 3 + 6 + 5 + 3 = 17 queries, whether for 3 states or 300.
MAX_QUERIES = 20


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("expire_tiers", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def lajada(partner):
    return partner[0]


@pytest.fixture
def state(lajada):
    def make(tier, *, expires_at, count=3, msisdn="628111000009", entered_at=None):
        return LoyaltyState.objects.create(
            partner=lajada, msisdn=msisdn, tier=tier, count=count,
            entered_at=entered_at or expires_at - timedelta(days=tier.validity_days or 1), expires_at=expires_at,
        )  # fmt: skip

    return make


def journey(state_obj):
    return list(
        JourneyEntry.objects.filter(state=state_obj)
        .order_by("id")
        .values_list("reason", "tier_before__name", "tier_after__name", "count", "reward", "expires_at", "created_at", "transaction")
    )


def test_expired_silver_moves_to_bronze_with_count_zero_and_a_demoted_journey(ladder, state):
    # given a SILVER customer whose tier expired yesterday
    now = timezone.now().replace(microsecond=0)
    expired_at = now - timedelta(days=1)
    s = state(ladder["SILVER"], expires_at=expired_at, count=4)
    # when
    out, err = run("--json", "--as-of", now.isoformat())
    # then
    assert json.loads(out) == {"moved": 1, "as_of": timezone.localtime(now).isoformat()}
    assert err == ""
    s.refresh_from_db()
    assert (s.tier_id, s.count, s.entered_at, s.expires_at) == (ladder["BRONZE"].id, 0, expired_at, None)
    assert journey(s) == [("DEMOTED", "SILVER", "BRONZE", 0, Decimal("0.00"), None, expired_at, None)]
    # and a second run finds nothing left to do
    assert json.loads(run("--json", "--as-of", now.isoformat())[0])["moved"] == 0
    assert len(journey(s)) == 1


def test_gold_expired_long_ago_drops_two_ranks_in_one_run_as_the_purchase_path_would(ladder, state):
    # given GOLD that expired 200 days ago: SILVER would have lasted 90 more days, ending 110 days ago
    now = timezone.now().replace(microsecond=0)
    gold_expired = now - timedelta(days=200)
    s = state(ladder["GOLD"], expires_at=gold_expired, count=7)
    expected, steps = rules.expire(
        ladder_current(),
        rules.Standing(rung=rung_for(ladder["GOLD"]), count=7, entered_at=s.entered_at, expires_at=gold_expired),
        now,
    )
    # when
    moved = tier_expire_all(as_of=now)
    # then
    assert moved == 1
    s.refresh_from_db()
    assert (s.tier_id, s.count, s.entered_at, s.expires_at) == (ladder["BRONZE"].id, 0, gold_expired + timedelta(days=90), None)
    assert (s.tier_id, s.count, s.entered_at, s.expires_at) == (
        expected.rung.id, expected.count, expected.entered_at, expected.expires_at,
    )  # fmt: skip
    assert journey(s) == [
        ("DEMOTED", "GOLD", "SILVER", 0, Decimal("0.00"), gold_expired + timedelta(days=90), gold_expired, None),
        ("DEMOTED", "SILVER", "BRONZE", 0, Decimal("0.00"), None, gold_expired + timedelta(days=90), None),
    ]
    assert [(st.before.name, st.after.rung.name, st.after.expires_at, st.at) for st in steps] == [
        (name_before, name_after, expires_at, at) for _, name_before, name_after, _, _, expires_at, at, _ in journey(s)
    ]


def test_gold_expired_recently_drops_one_rank_and_keeps_the_new_expiry(ladder, state):
    now = timezone.now().replace(microsecond=0)
    s = state(ladder["GOLD"], expires_at=now - timedelta(days=10))
    assert tier_expire_all(as_of=now) == 1
    s.refresh_from_db()
    assert (s.tier_id, s.count, s.expires_at) == (ladder["SILVER"].id, 0, now + timedelta(days=80))


def test_as_of_in_the_past_moves_nothing_and_the_bound_is_inclusive(ladder, state):
    # given a SILVER state expiring at T
    expires_at = timezone.now().replace(microsecond=0) - timedelta(hours=1)
    s = state(ladder["SILVER"], expires_at=expires_at, count=4)
    # when: as of one second before T
    out, _ = run("--as-of", (expires_at - timedelta(seconds=1)).isoformat())
    # then
    assert out == f"0 loyalty state(s) moved down by expiry as of {timezone.localtime(expires_at - timedelta(seconds=1)).isoformat()}\n"
    s.refresh_from_db()
    assert (s.tier_id, s.count, s.expires_at) == (ladder["SILVER"].id, 4, expires_at)
    assert journey(s) == []
    # when: as of T exactly (expires_at ≤ now expires)
    assert tier_expire_all(as_of=expires_at) == 1
    s.refresh_from_db()
    assert s.tier_id == ladder["BRONZE"].id


def test_states_not_yet_expired_or_never_expiring_are_untouched(ladder, state):
    now = timezone.now()
    future = state(ladder["GOLD"], expires_at=now + timedelta(days=1), msisdn="628111000001")
    bronze = LoyaltyState.objects.create(
        partner=future.partner, msisdn="628111000002", tier=ladder["BRONZE"], count=2, entered_at=now, expires_at=None
    )
    assert tier_expire_all(as_of=now) == 0
    assert list(LoyaltyState.objects.order_by("id").values_list("id", "tier_id", "count")) == [
        (future.id, ladder["GOLD"].id, 3),
        (bronze.id, ladder["BRONZE"].id, 2),
    ]


def test_job_then_purchase_equals_purchase_alone(ladder, state):
    """The outcome must not depend on when the job last ran (DOMAIN.md §2 step 2)."""
    now = timezone.now().replace(microsecond=0)
    s = state(ladder["GOLD"], expires_at=now - timedelta(days=60), count=2)
    standing = rules.Standing(rung=rung_for(ladder["GOLD"]), count=2, entered_at=s.entered_at, expires_at=s.expires_at)
    ladder_now = ladder_current()
    alone, _, reward_alone = rules.purchase(ladder_now, standing, now)
    tier_expire_all(as_of=now - timedelta(days=30))  # an earlier run, half way
    tier_expire_all(as_of=now)
    s.refresh_from_db()
    after_job = rules.Standing(rung=rung_for(s.tier), count=s.count, entered_at=s.entered_at, expires_at=s.expires_at)
    with_job, _, reward_with_job = rules.purchase(ladder_now, after_job, now)
    assert (with_job, reward_with_job) == (alone, reward_alone)
    assert (with_job.rung.name, with_job.count, with_job.expires_at) == ("SILVER", 1, now + timedelta(days=30))


def _many(lajada, tier, n, expires_at):
    LoyaltyState.objects.bulk_create(
        LoyaltyState(partner=lajada, msisdn=f"62811{i:07d}", tier=tier, count=1, entered_at=expires_at - timedelta(days=30), expires_at=expires_at)
        for i in range(n)
    )  # fmt: skip


def test_job_is_set_based_queries_do_not_grow_with_states(ladder, lajada, django_assert_max_num_queries):
    now = timezone.now()
    # given 3 expired states, then 300: the same number of queries
    _many(lajada, ladder["SILVER"], 3, now - timedelta(days=1))
    snapshots.reset()
    with CaptureQueriesContext(connection) as few:
        assert tier_expire_all(as_of=now, batch_size=1000) == 3
    JourneyEntry.objects.all().delete()
    LoyaltyState.objects.all().delete()
    _many(lajada, ladder["SILVER"], 300, now - timedelta(days=1))
    snapshots.reset()  # both runs load the ladder: like for like
    with django_assert_max_num_queries(MAX_QUERIES):
        with CaptureQueriesContext(connection) as many:
            assert tier_expire_all(as_of=now, batch_size=1000) == 300
    if connection.vendor == "postgresql":
        assert len(many.captured_queries) == len(few.captured_queries)
    else:  # SQLite splits the journey INSERT by its bound-variable limit (~110 rows per statement)
        assert len(many.captured_queries) == len(few.captured_queries) + 2
    assert LoyaltyState.objects.filter(tier=ladder["BRONZE"], count=0, expires_at=None).count() == 300
    assert JourneyEntry.objects.filter(reason="DEMOTED").count() == 300


def test_two_ranks_for_300_states_still_take_a_fixed_number_of_queries(ladder, lajada, django_assert_max_num_queries):
    now = timezone.now()
    _many(lajada, ladder["GOLD"], 150, now - timedelta(days=400))  # GOLD → SILVER → BRONZE
    _many_offset = [
        LoyaltyState(partner=lajada, msisdn=f"62812{i:07d}", tier=ladder["SILVER"], count=1,
                     entered_at=now - timedelta(days=95), expires_at=now - timedelta(days=5))
        for i in range(150)
    ]  # fmt: skip
    LoyaltyState.objects.bulk_create(_many_offset)
    with django_assert_max_num_queries(MAX_QUERIES):
        assert tier_expire_all(as_of=now, batch_size=1000) == 300
    assert LoyaltyState.objects.filter(tier=ladder["BRONZE"]).count() == 300
    assert JourneyEntry.objects.count() == 150 * 2 + 150


def test_batches_report_progress_on_stderr(ladder, lajada):
    now = timezone.now()
    _many(lajada, ladder["SILVER"], 250, now - timedelta(days=1))
    out, err = run("--batch-size", "100", "--json")
    assert json.loads(out)["moved"] == 250
    assert err.splitlines() == [
        "expire_tiers: 100 state(s) moved so far",
        "expire_tiers: 200 state(s) moved so far",
        "expire_tiers: 250 state(s) moved so far",
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--as-of", "yesterday"], "--as-of 'yesterday' is not an ISO 8601 datetime (e.g. 2026-01-31T00:00:00+07:00)"),
        (["--as-of", "2026-01-31T00:00:00"], "--as-of '2026-01-31T00:00:00' has no UTC offset (add e.g. +07:00 or Z)"),
        (["--as-of", "2999-01-01T00:00:00+07:00"], "--as-of 2999-01-01T00:00:00+07:00 is in the future; it must be now or earlier"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
    ],
)
def test_bad_input_is_refused_and_moves_nothing(ladder, state, args, message):
    s = state(ladder["SILVER"], expires_at=timezone.now() - timedelta(days=1))
    with pytest.raises(CommandError) as caught:
        run(*args)
    assert str(caught.value) == message
    s.refresh_from_db()
    assert s.tier_id == ladder["SILVER"].id
    assert JourneyEntry.objects.count() == 0


def test_entry_tier_with_validity_is_expired_set_based_too(db, lajada, django_assert_max_num_queries):
    # given a ladder whose entry tier itself expires (rank 1 stays, its expiry rolls forward)
    member = TierLevel.objects.create(name="MEMBER", rank=1, promote_after=5, validity_days=30)
    TierLevel.objects.create(name="VIP", rank=2, promote_after=None, validity_days=30)
    now = timezone.now()
    _many(lajada, member, 300, now - timedelta(days=1))
    # when / then: 300 expired entry-tier states within the same fixed budget as any other tier
    with django_assert_max_num_queries(MAX_QUERIES):
        assert tier_expire_all(as_of=now, batch_size=1000) == 300


def test_entry_tier_with_validity_rolls_its_expiry_forward_like_the_purchase_path(db, lajada):
    member = TierLevel.objects.create(name="MEMBER", rank=1, promote_after=5, validity_days=30)
    TierLevel.objects.create(name="VIP", rank=2, promote_after=None, validity_days=30)
    now = timezone.now().replace(microsecond=0)
    expired = now - timedelta(days=65)  # three expiries passed (65, 35 and 5 days ago): next = expired + 90 days
    s = LoyaltyState.objects.create(partner=lajada, msisdn="628111000009", tier=member, count=3, entered_at=expired - timedelta(days=30), expires_at=expired)
    expected, _ = rules.expire(
        ladder_current(), rules.Standing(rung=rung_for(member), count=3, entered_at=s.entered_at, expires_at=expired), now
    )
    assert tier_expire_all(as_of=now) == 1
    s.refresh_from_db()
    assert (s.tier_id, s.count, s.entered_at, s.expires_at) == (member.id, 0, expired + timedelta(days=60), expired + timedelta(days=90))
    assert (s.tier_id, s.count, s.entered_at, s.expires_at) == (expected.rung.id, expected.count, expected.entered_at, expected.expires_at)
    assert journey(s) == [
        ("DEMOTED", "MEMBER", "MEMBER", 0, Decimal("0.00"), expired + timedelta(days=days + 30), expired + timedelta(days=days), None)
        for days in (0, 30, 60)
    ]


def test_entry_tier_outcome_does_not_depend_on_when_the_job_ran(db, lajada):
    # DOMAIN.md §2: two customers in the same place, the job run once in between for the first only
    member = TierLevel.objects.create(name="MEMBER", rank=1, promote_after=5, validity_days=30)
    TierLevel.objects.create(name="VIP", rank=2, promote_after=None, validity_days=30)
    now = timezone.now().replace(microsecond=0)
    expired = now - timedelta(days=65)

    def customer(msisdn: str) -> LoyaltyState:
        return LoyaltyState.objects.create(partner=lajada, msisdn=msisdn, tier=member, count=3, entered_at=expired - timedelta(days=30), expires_at=expired)

    early = customer("628111000010")
    assert tier_expire_all(as_of=expired + timedelta(days=31)) == 1  # one expiry passed
    late = customer("628111000011")
    assert tier_expire_all(as_of=now) == 2
    early.refresh_from_db()
    late.refresh_from_db()
    assert (early.count, early.entered_at, early.expires_at) == (late.count, late.entered_at, late.expires_at) == (0, expired + timedelta(days=60), expired + timedelta(days=90))
    assert journey(early) == journey(late)
