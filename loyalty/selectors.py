from django.utils import timezone

from cezbek.snapshots import cached

from loyalty import rules
from loyalty.models import JourneyEntry, LoyaltyState, RewardRule, TierLevel


def ladder_current() -> rules.Ladder:
    """The live tier ladder with its rewards."""
    return cached("ladder", _ladder_load)


def _ladder_load() -> rules.Ladder:
    rungs = tuple(rung_for(t) for t in TierLevel.objects.filter(archived=False).order_by("rank"))
    rewards = {
        (tier_id, nth): reward
        for tier_id, nth, reward in RewardRule.objects.filter(archived=False).values_list("tier_id", "nth", "reward")
    }
    return rules.Ladder(rungs=rungs, rewards=rewards)


def rung_for(tier: TierLevel) -> rules.Rung:
    return rules.Rung(
        id=tier.id, name=tier.name, rank=tier.rank, promote_after=tier.promote_after, validity_days=tier.validity_days
    )


def customer_tier(*, partner, msisdn: str, now=None) -> dict | None:
    """The customer's tier with this partner as of now, expiry applied (read-only), with its journey."""
    now = now or timezone.now()
    state = LoyaltyState.objects.select_related("tier").filter(partner=partner, msisdn=msisdn).first()
    if state is None:
        return None
    ladder = ladder_current()
    standing, _ = rules.expire(
        ladder,
        rules.Standing(rung=rung_for(state.tier), count=state.count, entered_at=state.entered_at, expires_at=state.expires_at),
        now,
    )
    next_rung = ladder.higher(standing.rung)
    journey = list(
        JourneyEntry.objects.filter(state=state)
        .select_related("tier_before", "tier_after", "transaction")
        .order_by("-id")[:20]
    )
    return {
        "msisdn": msisdn,
        "tier": standing.rung.name,
        "rank": standing.rung.rank,
        "count": standing.count,
        "promote_after": standing.rung.promote_after,
        "next_tier": next_rung.name if next_rung else None,
        "entered_at": standing.entered_at,
        "expires_at": standing.expires_at,
        "journey": journey,
    }
