"""Loyalty writes (DOMAIN.md §2): every change under the state's row lock, with its journey entry."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import DEFAULT_DB_ALIAS, connection, transaction
from django.db.models import F

from cezbek import sql
from cezbek.errors import CezbekError
from loyalty import rules
from loyalty.models import JourneyEntry, LoyaltyState, TierLevel
from loyalty.selectors import ladder_current, rung_for

logger = logging.getLogger("cezbek.loyalty")


@dataclass
class PurchasePlan:
    """What one purchase does to a locked loyalty state, computed before it is written."""

    state: LoyaltyState
    after: rules.Standing
    steps: list[rules.Step]
    reward: Decimal


def loyalty_purchase_plan(*, ladder: rules.Ladder, state: LoyaltyState, now: datetime) -> PurchasePlan:
    """What a purchase does to the customer's state, locked by `loyalty_state_lock`."""
    after, steps, reward = rules.purchase(ladder, standing_of(ladder, state), now)
    return PurchasePlan(state=state, after=after, steps=steps, reward=reward)


def loyalty_ladder() -> rules.Ladder:
    """The live ladder; a purchase cannot be recorded without one."""
    ladder = ladder_current()
    if not ladder.rungs:
        raise CezbekError("No loyalty tiers are configured.")
    return ladder


def loyalty_state_lock(*, ladder: rules.Ladder, partner_id: int, msisdn: str, now: datetime, then: list[tuple[str, list]] = (), cursor=None):
    """Creates the customer's state at a first purchase, locks it until the transaction ends, then
    runs `then` (statements that need the lock held); returns the state and the rows of the last
    of them. On PostgreSQL one round trip (on `cursor` if given, see `sql.run_together`). Call
    inside atomic().

    Two first purchases at once: one insert wins, the other's does nothing; both then lock the row.
    """
    results = sql.run_together([
        sql.insert_ignore_parts(loyalty_state_new(ladder=ladder, partner_id=partner_id, msisdn=msisdn, now=now), unique=("partner_id", "msisdn")),
        loyalty_states_lock_sql(partner_id=partner_id, msisdns=[msisdn]),
        *then,
    ], cursor=cursor)
    state = loyalty_states_read(results[1])[msisdn]
    return state, results[-1] if then else []


def loyalty_state_new(*, ladder: rules.Ladder, partner_id: int, msisdn: str, now: datetime) -> LoyaltyState:
    """The unsaved state of a customer's first purchase: the entry tier, count 0."""
    begin = rules.start(ladder, now)
    return sql.new(
        LoyaltyState, partner_id=partner_id, msisdn=msisdn, tier_id=begin.rung.id, count=0, entered_at=begin.entered_at, expires_at=begin.expires_at
    )


def standing_of(ladder: rules.Ladder, state: LoyaltyState) -> rules.Standing:
    """A stored state as the rules see it (its tier may since have been archived from the ladder)."""
    rung = ladder.by_id(state.tier_id) or rung_for(TierLevel.objects.get(pk=state.tier_id))
    return rules.Standing(rung=rung, count=state.count, entered_at=state.entered_at, expires_at=state.expires_at)


def standing_apply(state: LoyaltyState, after: rules.Standing) -> None:
    """Copies a new standing onto the state (not saved)."""
    state.tier_id = after.rung.id
    state.count = after.count
    state.entered_at = after.entered_at
    state.expires_at = after.expires_at


def journey_entries(*, state: LoyaltyState, steps: list[rules.Step], transaction_id: int) -> list[JourneyEntry]:
    """One unsaved journey entry per step of a purchase; a demotion belongs to no transaction."""
    return [
        sql.new(
            JourneyEntry,
            state=state,
            transaction_id=transaction_id if step.reason != "DEMOTED" else None,
            reason=step.reason,
            tier_before_id=step.before.id,
            tier_after_id=step.after.rung.id,
            count=step.after.count,
            reward=step.reward,
            expires_at=step.after.expires_at,
            created_at=step.at,
        )
        for step in steps
    ]


STATE_COLUMNS = ("id", "partner_id", "msisdn", "tier_id", "count", "entered_at", "expires_at")


def loyalty_states_lock(*, partner_id: int, msisdns: list[str]) -> dict[str, LoyaltyState]:
    """The customers' state rows, locked until the transaction ends (SELECT … FOR UPDATE), in MSISDN order."""
    with connection.cursor() as cursor:
        cursor.execute(*loyalty_states_lock_sql(partner_id=partner_id, msisdns=msisdns))
        return loyalty_states_read(cursor.fetchall())


def loyalty_states_lock_sql(*, partner_id: int, msisdns: list[str]) -> tuple[str, list]:
    """The statement of `loyalty_states_lock`, and its parameters."""
    return _states_lock_sql(len(msisdns)), [partner_id, *msisdns]


@functools.lru_cache(maxsize=32)
def _states_lock_sql(count: int) -> str:
    """The rows alone: with a JOIN, PostgreSQL re-checks the join after waiting for the lock, and a
    row whose tier a concurrent purchase just changed would silently drop out. Hand-written
    because it runs on every purchase and the ORM's compilation cost more than the query."""
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    table = connection.ops.quote_name(LoyaltyState._meta.db_table)
    columns = ", ".join(f"{table}.{connection.ops.quote_name(c)}" for c in STATE_COLUMNS)
    return (
        f"SELECT {columns} FROM {table} WHERE {table}.\"partner_id\" = %s AND {table}.\"msisdn\" IN ({', '.join(['%s'] * count)}) "
        f"ORDER BY {table}.\"msisdn\"{lock}"
    )


def loyalty_states_read(rows) -> dict[str, LoyaltyState]:
    """Saved instances of the rows `loyalty_states_lock_sql` selects, by MSISDN."""
    converting = _state_converters()
    states = {}
    for row in rows:
        if converting:
            row = list(row)
            for index, column, converters in converting:
                for convert in converters:
                    row[index] = convert(row[index], column, connection)
        state = LoyaltyState.from_db(DEFAULT_DB_ALIAS, STATE_COLUMNS, row)
        states[state.msisdn] = state
    return states


@functools.cache
def _state_converters() -> list[tuple]:
    """The backend's converters of the state's columns (SQLite returns dates as text; PostgreSQL needs none)."""
    converting = []
    for index, name in enumerate(STATE_COLUMNS):
        column = LoyaltyState._meta.get_field(name).get_col(LoyaltyState._meta.db_table)
        converters = connection.ops.get_db_converters(column)
        if converters:
            converting.append((index, column, converters))
    return converting


def loyalty_plan_writes(*, plan: PurchasePlan, transaction) -> tuple[list[sql.Row], tuple[LoyaltyState, list[str]]]:
    """A planned purchase's writes for `sql.insert_chain`: one journey entry per step, linked to
    the purchase's transaction row (a demotion belongs to none), and the state's update."""
    state = plan.state
    standing_apply(state, plan.after)
    rows = [
        sql.Row(entry, links={} if entry.reason == JourneyEntry.Reason.DEMOTED else {"transaction_id": transaction})
        for entry in journey_entries(state=state, steps=plan.steps, transaction_id=None)
    ]
    return rows, (state, ["tier", "count", "entered_at", "expires_at", "updated_at"])


def tier_expire_all(*, as_of: datetime, batch_size: int = 1000, progress=None) -> int:
    """Applies step 2 to every state expired at as_of, in set-based batches; returns states moved.

    Each pass takes one batch of expired states under lock and moves every state of one tier
    with a single UPDATE, writing the journey with a single INSERT. A state expired for several
    periods moves one rank per pass, exactly as the purchase path would move it.
    """
    ladder = ladder_current()
    if not ladder.rungs:
        return 0
    moved_ids: set[int] = set()
    tiers = {t.id: t for t in TierLevel.objects.all()}
    while True:
        with transaction.atomic():
            batch = list(
                LoyaltyState.objects.select_for_update(skip_locked=True)
                .filter(expires_at__lte=as_of)
                .order_by("id")
                .values_list("id", "tier_id", "expires_at")[:batch_size]
            )
            if not batch:
                break
            by_tier: dict[int, list[int]] = {}
            for state_id, tier_id, _ in batch:
                by_tier.setdefault(tier_id, []).append(state_id)
            entries = []
            for tier_id, ids in by_tier.items():
                entries.extend(_expire_tier_group(ladder, tiers[tier_id], ids, batch, as_of))
            JourneyEntry.objects.bulk_create(entries)
            moved_ids.update(state_id for state_id, _, _ in batch)
        if progress:
            progress(len(moved_ids))
    return len(moved_ids)


def _expire_tier_group(ladder, tier: TierLevel, ids: list[int], batch, as_of) -> list[JourneyEntry]:
    """One set-based step for the states in `ids`, all on `tier`; returns their journey entries."""
    rung = rung_for(tier)
    lower = ladder.lower(rung)
    wanted = set(ids)
    expiries = {state_id: expires_at for state_id, _, expires_at in batch if state_id in wanted}
    if lower is None:
        # Lowest rank stays: each state passes every expiry up to as_of, one journey entry each,
        # as rules.expire does for a purchase; one UPDATE … CASE statement writes the whole group.
        states = []
        entries = []
        for state_id in ids:
            old = expiries[state_id]
            after, steps = rules.expire(ladder, rules.Standing(rung=rung, count=0, entered_at=old, expires_at=old), as_of)
            states.append(LoyaltyState(id=state_id, count=0, entered_at=after.entered_at, expires_at=after.expires_at))
            entries.extend(_journey_entry(state_id, tier.id, step.after, step.at) for step in steps)
        LoyaltyState.objects.bulk_update(states, ["count", "entered_at", "expires_at"], batch_size=len(states))
        return entries
    update = {"tier_id": lower.id, "count": 0, "entered_at": F("expires_at")}
    if lower.validity_days:
        update["expires_at"] = F("expires_at") + timedelta(days=lower.validity_days)
    else:
        update["expires_at"] = None
    LoyaltyState.objects.filter(id__in=ids).update(**update)
    entries = []
    for state_id in ids:
        old = expiries[state_id]
        expires_at = old + timedelta(days=lower.validity_days) if lower.validity_days else None
        after = rules.Standing(rung=lower, count=0, entered_at=old, expires_at=expires_at)
        entries.append(_journey_entry(state_id, tier.id, after, old))
    return entries


def _journey_entry(state_id: int, before_id: int, after: rules.Standing, at) -> JourneyEntry:
    return JourneyEntry(
        state_id=state_id,
        reason=JourneyEntry.Reason.DEMOTED,
        tier_before_id=before_id,
        tier_after_id=after.rung.id,
        count=0,
        reward=Decimal("0.00"),
        expires_at=after.expires_at,
        created_at=at,
    )
