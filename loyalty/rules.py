"""The loyalty ladder's arithmetic (DOMAIN.md §2), pure: no database, no clock.

Purchases, the tier lookup and the daily expiry job all go through these functions, so a
customer's tier never depends on when the expiry job last ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

ZERO = Decimal("0.00")


@dataclass(frozen=True)
class Rung:
    id: int
    name: str
    rank: int
    promote_after: int | None
    validity_days: int | None


@dataclass(frozen=True)
class Ladder:
    rungs: tuple[Rung, ...]  # live tiers, by rank
    rewards: dict[tuple[int, int], Decimal] = field(default_factory=dict)  # (tier id, nth) -> reward

    @property
    def entry(self) -> Rung:
        return self.rungs[0]

    def higher(self, rung: Rung) -> Rung | None:
        return next((r for r in self.rungs if r.rank > rung.rank), None)

    def lower(self, rung: Rung) -> Rung | None:
        return next((r for r in reversed(self.rungs) if r.rank < rung.rank), None)

    def by_id(self, tier_id: int) -> Rung | None:
        return next((r for r in self.rungs if r.id == tier_id), None)

    def reward(self, rung: Rung, nth: int) -> Decimal:
        return self.rewards.get((rung.id, nth), ZERO)


@dataclass(frozen=True)
class Standing:
    """A customer's loyalty state at one moment."""

    rung: Rung
    count: int
    entered_at: datetime
    expires_at: datetime | None


@dataclass(frozen=True)
class Step:
    """One change: what the journey records."""

    reason: str  # PURCHASE, PROMOTED or DEMOTED
    before: Rung
    after: Standing
    reward: Decimal = ZERO
    at: datetime | None = None


def _plus_validity(moment: datetime, rung: Rung) -> datetime | None:
    return moment + timedelta(days=rung.validity_days) if rung.validity_days else None


def start(ladder: Ladder, now: datetime) -> Standing:
    """A new customer: rank 1, count 0, expiring after the entry tier's validity."""
    return Standing(rung=ladder.entry, count=0, entered_at=now, expires_at=_plus_validity(now, ladder.entry))


def expire(ladder: Ladder, standing: Standing, now: datetime) -> tuple[Standing, list[Step]]:
    """Step 2: while expired, drop one rank (rank 1 stays), count 0, expiry moves on from the old one.

    One step, and one journey entry, per expiry passed, on rank 1 too: the daily job passes them
    one at a time, so a purchase (or the tier lookup) that finds several passed writes the same
    entries and the same state the job's runs would have.
    """
    steps: list[Step] = []
    while standing.expires_at is not None and standing.expires_at <= now:
        lower = ladder.lower(standing.rung) or standing.rung  # the lowest rank stays
        moved = Standing(rung=lower, count=0, entered_at=standing.expires_at, expires_at=_plus_validity(standing.expires_at, lower))
        steps.append(Step(reason="DEMOTED", before=standing.rung, after=moved, at=standing.expires_at))
        standing = moved
    return standing, steps


def purchase(ladder: Ladder, standing: Standing, now: datetime) -> tuple[Standing, list[Step], Decimal]:
    """Steps 2–4 for one accepted purchase: returns the new standing, the journey steps and the reward."""
    standing, steps = expire(ladder, standing, now)
    count = standing.count + 1
    reward = ladder.reward(standing.rung, count)
    higher = ladder.higher(standing.rung)
    promote_after = standing.rung.promote_after
    if promote_after is not None and count >= promote_after and higher is not None:
        after = Standing(rung=higher, count=0, entered_at=now, expires_at=_plus_validity(now, higher))
        reason = "PROMOTED"
    else:
        after = Standing(rung=standing.rung, count=count, entered_at=standing.entered_at, expires_at=standing.expires_at)
        reason = "PURCHASE"
    steps.append(Step(reason=reason, before=standing.rung, after=after, reward=reward, at=now))
    return after, steps, reward
