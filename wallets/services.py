"""Payout writes (DOMAIN.md §3, §5): never lose money, never pay twice.

How a payout moves, and why it is safe:
- A worker *claims* a payout with a conditional update (status and `lease` must be what it read)
  and commits an IN_FLIGHT attempt row naming the provider and reference before the request
  leaves. Only the holder of the current lease may write the outcome.
- A definite refusal (nothing moved) sends the payout back to PENDING and on to the next cheapest
  route; that provider is never tried again for this payout.
- An unknown outcome is never re-sent blindly: the payout waits in UNKNOWN for a grace period
  longer than any request can stay in flight, then a status inquiry decides. Only "no such
  transfer" lets it be sent again. A provider without inquiry or idempotent references
  (GoPaid) sends it to MANUAL_REVIEW instead.
- Xenit's PENDING waits in AWAITING_CALLBACK for the signed callback, or is finished by inquiry.
- The sweeper resumes whatever a crash left behind, with back-off and a ceiling after which
  the payout goes to MANUAL_REVIEW.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import pybreaker
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from kombu.exceptions import KombuError

from cezbek import logs, sql
from cezbek.errors import CezbekError, NotFound, ValidationFailed
from cezbek.gathering import Gatherer
from wallets import selectors
from wallets.breakers import breaker_for, breaker_priming_give, breaker_priming_take
from wallets.models import Payout, PayoutAttempt, PayoutEvent
from wallets.providers import (
    Credited,
    ProviderError,
    Refused,
    TransferNotFound,
    Unavailable,
    Unknown,
    get_client,
)

logger = logging.getLogger("cezbek.payouts")

S = Payout.Status
O = PayoutAttempt.Outcome
RESOLVABLE = (S.UNKNOWN, S.AWAITING_CALLBACK)


# --- creation ------------------------------------------------------------------------------


def payout_writes(*, transaction_obj, amount: Decimal, now: datetime, window_total: Decimal) -> list[sql.Row]:
    """A purchase's new payout and its first event, for `sql.insert_chain` in the purchase's
    transaction: the payout linked to the transaction's row, the event to the payout's.

    Risk control (DOMAIN.md §8): when it would take the MSISDN's payouts of the rolling window
    (`window_total`, the `velocity_total` read under its lock) over the velocity limit, the payout
    is created HELD, flagged `velocity`, and waits for an operator.
    """
    payout = payout_new(transaction_obj=transaction_obj, amount=amount, now=now, window_total=window_total)
    event = _event(None, "", payout.status, payout_created_note(payout, window_total), None)
    return [sql.Row(payout, links={"transaction_id": transaction_obj}), sql.Row(event, links={"payout_id": payout})]


def payout_announce(rows: list[sql.Row], *, kezbek_ref: str) -> Payout:
    """After `payout_writes`' rows are written: queues the payout's delivery once the purchase
    commits, or logs why it is HELD (it waits for an operator). Returns the payout."""
    payout, event = rows[0].instance, rows[1].instance
    if payout.status == S.HELD:
        payout_held_log(payout, event.note)
        return payout
    hint = payout_hint(payout, kezbek_ref=kezbek_ref)
    transaction.on_commit(lambda: payout_enqueue(payout_id=payout.pk, hint=hint))
    return payout


def payout_new(*, transaction_obj, amount: Decimal, now: datetime, window_total: Decimal) -> Payout:
    """The unsaved payout of a purchase: HELD and flagged when it takes the window over the velocity limit."""
    held = window_total + amount > settings.CEZBEK_VELOCITY_LIMIT
    return sql.new(
        Payout,
        transaction=transaction_obj,
        wallet_id=transaction_obj.wallet_id,
        msisdn=transaction_obj.msisdn,
        amount=amount,
        status=S.HELD if held else S.PENDING,
        flags=[VELOCITY] if held else [],
        created_at=now,
    )


def payout_created_note(payout: Payout, window_total: Decimal) -> str:
    """The note of a new payout's first event (`payout_held_log` logs it once the payout has an id)."""
    if payout.status != S.HELD:
        return "created"
    return (
        f"held: {window_total} already paid or owed to this MSISDN in the last "
        f"{settings.CEZBEK_VELOCITY_WINDOW_SECONDS} s, over the limit of {settings.CEZBEK_VELOCITY_LIMIT} with this one"
    )


def payout_held_log(payout: Payout, note: str) -> None:
    logger.warning("payout %s %s", payout.pk, note)


def payout_hint(payout: Payout, *, kezbek_ref: str) -> dict:
    """What the delivery task's first claim checks instead of reading the payout (payout_deliver)."""
    return {"wallet_id": payout.wallet_id, "amount": str(payout.amount), "msisdn": payout.msisdn, "kezbek_ref": kezbek_ref}


VELOCITY = "velocity"
VELOCITY_LOCK = 0x7E10C  # first key of the advisory locks that serialise one MSISDN's new payouts


def velocity_window_start(now: datetime) -> datetime:
    return now - timedelta(seconds=settings.CEZBEK_VELOCITY_WINDOW_SECONDS)


def velocity_statements(*, msisdn: str, now: datetime) -> list[tuple[str, list]]:
    """The statements that read the MSISDN's payouts created within the window, across partners
    (FAILED and CANCELLED not counted), for `sql.run_together`; `velocity_total` reads the last one's rows.

    On PostgreSQL a transaction-scoped advisory lock on the MSISDN is taken first, so that
    concurrent purchases of one customer (through different partners too) see each other's
    payouts: the sum is read by a statement that starts after the lock is held.
    """
    since, start = sql.instant(velocity_window_start(now))
    window = (
        f"SELECT COALESCE(SUM(amount), 0) FROM {PAYOUTS} WHERE msisdn = %s AND created_at >= {since} AND status NOT IN (%s, %s)",
        [msisdn, start, S.FAILED.value, S.CANCELLED.value],
    )
    if not sql.on_postgresql():
        return [window]
    return [("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [VELOCITY_LOCK, msisdn]), window]


def velocity_total(rows: list[tuple]) -> Decimal:
    """The window total that the last of `velocity_statements` read."""
    return Decimal(rows[0][0]).quantize(Decimal("0.01"))


def payout_release(*, payout: Payout, actor, note: str = "") -> Payout:
    """HELD → PENDING: an operator lets a velocity-held payout go (audited); delivery starts after commit."""
    if payout.status != S.HELD:
        raise ValidationFailed.for_field("status", f"Only a HELD payout can be released; this one is {payout.status}.")
    with transaction.atomic():
        if not _move(payout, S.PENDING, expect=(S.HELD,), note=note or "released by an operator", actor=actor, next_check_at=None):
            raise CezbekError("The payout changed meanwhile; reload and try again.")
        transaction.on_commit(lambda: payout_enqueue(payout_id=payout.pk))
    return payout


def payout_enqueue(*, payout_id: int, countdown: float = 0, resolve: bool = False, hint: dict | None = None) -> None:
    """Queues delivery (or resolution). A broker outage loses nothing: the sweeper finds the payout.

    `hint` (a new payout's wallet, amount, MSISDN and kezbek_ref) lets the worker claim it without
    reading it first; the claim checks every one of them in its WHERE clause. A new payout goes to
    the batch task (`wallets.payouts_deliver`), which delivers the payouts it gathers together.
    With CEZBEK_PAYOUT_GATHER_SECONDS, new payouts are first gathered in this process and queued
    several to a message, from a background thread (`NEW_PAYOUTS`), unless tasks run eagerly.
    """
    from cezbek.celery import app
    from wallets.tasks import payout_deliver, payout_resolve, payouts_deliver

    if resolve:
        task, kwargs = payout_resolve, None
    elif hint:
        # The app itself, not through the task's proxy (which finds the current app's task on every read).
        if settings.CEZBEK_PAYOUT_GATHER_SECONDS > 0 and not app.conf.task_always_eager:
            NEW_PAYOUTS.add((payout_id, hint, logs.request_id.get()))
            return
        task, kwargs = payouts_deliver, {"hint": hint}
    else:
        task, kwargs = payout_deliver, None
    try:
        # argsrepr/kwargsrepr given: Celery would otherwise format them with saferepr on every purchase.
        task.apply_async((payout_id,), kwargs, countdown=countdown or None, argsrepr=f"({payout_id},)", kwargsrepr=repr(kwargs or {}))
    except KombuError:
        logger.exception("could not queue payout %s; the sweeper will pick it up", payout_id)


def payouts_gathered_enqueue(gathered: list[tuple[int, dict, str | None]]) -> None:
    """Queues new payouts gathered from several purchases (payout id, hint, request id) as one
    message of the batch task; each keeps its own request id for the worker's log lines."""
    from wallets.tasks import payouts_deliver

    try:
        payouts_deliver.apply_async(
            (), {"payouts": gathered}, argsrepr="()", kwargsrepr=repr({"payouts": [payout_id for payout_id, _, _ in gathered]}),
        )
    except KombuError:
        logger.exception("could not queue %d new payouts; the sweeper will pick them up", len(gathered))


# The web process's new payouts, on their way to the broker (cezbek/gathering.py): a payout lost in
# it (the process killed before its message was sent) is PENDING, and the sweeper queues it again.
NEW_PAYOUTS = Gatherer(
    payouts_gathered_enqueue, wait=settings.CEZBEK_PAYOUT_GATHER_SECONDS, most=settings.CEZBEK_PAYOUT_BATCH_SIZE,
    name="cezbek-new-payouts",
)


def payouts_enqueue(*, payouts: list[tuple[int, dict]]) -> None:
    """Queues the delivery of many new payouts, each with its hint (see `payout_enqueue`)."""
    _publish_many("wallets.payouts_deliver", [((payout_id,), {"hint": hint}, nullcontext()) for payout_id, hint in payouts])


def _publish_many(
    task_name: str, calls: list[tuple[tuple, dict | None, AbstractContextManager]], *, lost: Callable[[list], None] | None = None
) -> None:
    """Queues many calls of one task in pipelined broker writes: one producer and kombu's publish
    batch (one Redis round trip per 500 messages); the arguments are shown as given instead of being
    formatted for the message's `argsrepr`. A broker outage is logged, and `lost(calls)` runs when
    given (which of them reached the broker is not known): the sweeper finds PENDING payouts again,
    and notifications are recorded in this process instead (docs/decisions.md)."""
    import wallets.tasks  # noqa: F401  (registers the tasks by name, in a process that has not imported them yet)
    from cezbek.celery import app

    if not calls:
        return
    task = app.tasks[task_name]
    try:
        with app.producer_or_acquire() as producer, producer.batch(max_size=500):
            for args, kwargs, context in calls:
                with context:  # e.g. the payout's request id, for its message's header
                    task.apply_async(
                        args, kwargs, producer=producer, declare=[], argsrepr=repr(args), kwargsrepr=repr(kwargs or {}),
                    )
    except KombuError:
        logger.exception("could not queue %d %s tasks", len(calls), task_name)
        if lost is not None:
            lost(calls)


# --- the state machine's single write path ----------------------------------------------------
#
# Plain SQL, portable between PostgreSQL and SQLite: these few statements run for every payout,
# and compiling them through the ORM cost more CPU than everything else a delivery does.

PAYOUTS = connection.ops.quote_name(Payout._meta.db_table)
ATTEMPTS = connection.ops.quote_name(PayoutAttempt._meta.db_table)
TRANSACTIONS = connection.ops.quote_name(Payout.transaction.field.related_model._meta.db_table)
INCREMENT = object()  # a column to increase by one


def _run(sql: str, params: list) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def _value(value):
    return connection.ops.adapt_datetimefield_value(value) if isinstance(value, datetime) else value


def _event(payout_id: int, from_status: str, to_status: str, note: str, actor) -> PayoutEvent:
    return sql.new(PayoutEvent, payout_id=payout_id, from_status=from_status, to_status=to_status, note=note[:2000], actor=actor)


def _remember(payout: Payout, fields: dict) -> None:
    """Mirrors on the instance what an UPDATE just wrote."""
    for name, value in fields.items():
        setattr(payout, name, getattr(payout, name) + 1 if value is INCREMENT else value)


def _update_if(payout: Payout, *, expect: tuple[str, ...], sets: dict, where: tuple[str, list] = ("", [])) -> bool:
    """UPDATE the payout if it is still in one of `expect` under the lease we hold (and `where` holds)."""
    return _run(*_update_sql(payout, expect=expect, sets=sets, where=where)) == 1


def _update_sql(payout: Payout, *, expect: tuple[str, ...], sets: dict, where: tuple[str, list] = ("", [])) -> tuple[str, list]:
    columns, params = [], []
    for column, value in sets.items():
        if value is INCREMENT:
            columns.append(f"{column} = {column} + 1")
        else:
            columns.append(f"{column} = %s")
            params.append(_value(value))
    placeholders = ", ".join(["%s"] * len(expect))
    sql = f"UPDATE {PAYOUTS} SET {', '.join(columns)} WHERE id = %s AND lease = %s AND status IN ({placeholders}){where[0]}"
    return sql, [*params, payout.pk, payout.lease, *expect, *where[1]]


def _update_then_insert(payout: Payout, *, expect, sets: dict, where=("", []), rows: list, also=None) -> list | None:
    """The conditional UPDATE and, only when it matched, INSERTs of `rows` (unsaved model instances);
    `also`, a statement (sql, params) run whether or not it matched (an attempt's outcome). On
    PostgreSQL one statement (data-modifying CTEs), so it needs no transaction of its own and costs
    one round trip; elsewhere the same statements in one transaction. Returns the new rows' ids, or
    None when the payout was not in `expect` under our lease."""
    update, params = _update_sql(payout, expect=expect, sets=sets, where=where)
    if connection.vendor != "postgresql":
        with transaction.atomic(savepoint=False):
            if also:
                _run(*also)
            if _run(update, params) != 1:
                return None
            return [sql.insert(row).pk for row in rows]
    parts = [f"matched AS ({update} RETURNING id)"]
    if also:
        parts.append(f"also AS ({also[0]})")
        params.extend(also[1])
    selects = []
    for n, row in enumerate(rows):
        head, values = sql.insert_parts(row)
        parts.append(f"i{n} AS ({head} SELECT {', '.join(['%s'] * len(values))} FROM matched RETURNING id)")
        params.extend(values)
        selects.append(f"(SELECT id FROM i{n})")
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {', '.join(parts)} SELECT (SELECT count(*) FROM matched){''.join(', ' + s for s in selects)}", params)
        matched, *ids = cursor.fetchone()
    if not matched:
        return None
    for row, pk in zip(rows, ids, strict=True):
        sql.saved(row, pk)
    return ids


def _move(
    payout: Payout,
    to: str,
    *,
    expect: tuple[str, ...],
    note: str = "",
    actor=None,
    also: tuple[str, list] | None = None,
    **fields,
) -> bool:
    """Moves the payout if it is still in one of `expect` under the lease we hold; records the event.

    Returns False (and changes nothing but `also`, see _update_then_insert) when someone else moved
    it first.
    """
    now = timezone.now()
    event = _event(payout.pk, payout.status, to, note, actor)
    if _update_then_insert(payout, expect=expect, sets={"status": to, "updated_at": now, **fields}, rows=[event], also=also) is None:
        return False
    logger.info("payout %s %s → %s %s", payout.pk, payout.status, to, note)
    payout.status = to
    _remember(payout, fields)
    return True


def _claim(
    payout: Payout,
    *,
    expect: tuple[str, ...],
    provider_id: int,
    reference: str,
    kind: str,
    note: str,
    where: tuple[str, list] = ("", []),
    **fields,
) -> PayoutAttempt | None:
    """Takes the payout for one conversation with a provider: SENDING under a new lease, IN_FLIGHT row committed."""
    now = timezone.now()
    sets = {"status": S.SENDING, "lease": INCREMENT, "provider_id": provider_id, "reference": reference, "updated_at": now, **fields}
    attempt = PayoutAttempt(payout_id=payout.pk, provider_id=provider_id, kind=kind, reference=reference)
    rows = [_event(payout.pk, payout.status, S.SENDING, note, None), attempt]
    if _update_then_insert(payout, expect=expect, sets=sets, where=where, rows=rows) is None:
        return None
    payout.status, payout.lease, payout.provider_id, payout.reference = S.SENDING, payout.lease + 1, provider_id, reference
    _remember(payout, fields)
    return attempt


def _finish_attempt(attempt: PayoutAttempt, outcome: str, *, started: float, http_status=None, provider_ref="", message="") -> None:
    _run(*_finish_sql(attempt, outcome, started=started, http_status=http_status, provider_ref=provider_ref, message=message))


def _finish_sql(
    attempt: PayoutAttempt, outcome: str, *, started: float, ended: float | None = None, http_status=None, provider_ref="", message=""
) -> tuple[str, list]:
    """The UPDATE that records an attempt's outcome; its latency runs from `started` to `ended` (now)."""
    latency_ms = int(((time.monotonic() if ended is None else ended) - started) * 1000)
    return (
        f"UPDATE {ATTEMPTS} SET outcome = %s, http_status = %s, provider_ref = %s, latency_ms = %s, message = %s WHERE id = %s",
        [outcome, http_status, provider_ref or "", latency_ms, str(message)[:300], attempt.pk],
    )


def _load_for_delivery(payout_id: int) -> Payout | None:
    """The payout with its transaction's kezbek_ref (as `kezbek_ref`), in one query."""
    rows = Payout.objects.raw(
        f"SELECT p.id, p.status, p.lease, p.wallet_id, p.msisdn, p.amount, p.provider_id, p.reference, p.provider_ref, "
        f"p.retried_at, p.checks, p.transaction_id, t.kezbek_ref AS kezbek_ref "
        f"FROM {PAYOUTS} p JOIN {TRANSACTIONS} t ON t.id = p.transaction_id WHERE p.id = %s",
        [payout_id],
    )
    return next(iter(rows), None)


def _backoff(step: int) -> float:
    return min(settings.CEZBEK_RETRY_BASE_SECONDS * (2 ** max(step, 0)), settings.CEZBEK_RETRY_MAX_SECONDS)


def payout_reference(*, kezbek_ref: str, provider_code: str) -> str:
    """Our client reference at a provider: stable across retries of one payout with one provider."""
    return f"{kezbek_ref}-{provider_code}"


# --- delivery ----------------------------------------------------------------------------------


NOT_CLAIMED = "not claimed"


def payout_deliver(*, payout_id: int, hint: dict | None = None) -> str | None:
    """Sends a PENDING payout through the cheapest healthy route, failing over on refusals.

    Safe to run twice: only the worker whose claim succeeds sends. Returns the final status
    this call left the payout in (None when there was nothing to do).

    With a `hint` (a new payout's own fields, from `payout_announce`) the first claim goes out
    without reading the payout: it applies only if the payout is PENDING, never claimed, and
    has exactly that wallet, amount, MSISDN and transaction. Otherwise the payout is read.
    """
    if hint is not None:
        outcome = _deliver(*_hinted(payout_id, hint), refused=set())
        if outcome != NOT_CLAIMED:
            return outcome
    payout = _load_for_delivery(payout_id)
    if payout is None or payout.status != S.PENDING:
        return None
    # Never claimed (lease 0): nothing can have refused it yet.
    refused = selectors.payout_refused_by(payout=payout) if payout.lease else set()
    outcome = _deliver(payout, ("", []), refused=refused)
    return None if outcome == NOT_CLAIMED else outcome


def _hinted(payout_id: int, hint: dict) -> tuple[Payout, tuple[str, list]]:
    """A never-claimed payout as `payout_writes` described it, and the condition that proves it."""
    payout = Payout(
        pk=payout_id,
        status=S.PENDING,
        lease=0,
        wallet_id=int(hint["wallet_id"]),
        msisdn=str(hint["msisdn"]),
        amount=Decimal(str(hint["amount"])),
        provider_ref="",
        checks=0,
    )
    payout.kezbek_ref = str(hint["kezbek_ref"])
    where = (
        f" AND wallet_id = %s AND amount = %s AND msisdn = %s"
        f" AND transaction_id = (SELECT t.id FROM {TRANSACTIONS} t WHERE t.kezbek_ref = %s)",
        [payout.wallet_id, payout.amount, payout.msisdn, payout.kezbek_ref],
    )
    return payout, where


def payouts_deliver(*, items: list[tuple[int, dict | None]], scope: Callable[[int], AbstractContextManager] | None = None) -> dict[str, int]:
    """Delivers many payouts at once (the batch task): what `payout_deliver` does for each, with
    the database and the waiting shared.

    On PostgreSQL the new payouts (those with a hint) are claimed by one statement, sent in
    parallel threads, and those credited are finished by one statement. Every other outcome, and
    every payout that claim could not take, goes on exactly as in `payout_deliver`, one by one:
    failover, unknown outcomes, pending, no route. Returns how many ended in each state.

    This happens in rounds of at most CEZBEK_PAYOUT_BATCH_SIZE payouts, as many as there are send
    threads: a payout is claimed (SENDING) only when a thread is there to send it at once, so the
    sweeper's stale-SENDING check never meets one that is still waiting its turn. (A batch of
    gathered messages holds up to 16 payouts a message.)

    `scope(payout_id)` is entered around each payout's own work and log lines (its request id).
    """
    scope = scope or _no_scope
    unique: dict[int, dict | None] = {}
    for payout_id, hint in items:
        unique.setdefault(payout_id, hint)  # the same message twice (redelivered): the claim lets one through anyway
    unique_items = list(unique.items())
    outcomes: Counter[str] = Counter()
    size = settings.CEZBEK_PAYOUT_BATCH_SIZE
    for start in range(0, len(unique_items), size):
        outcomes.update(_payouts_deliver_round(unique_items[start:start + size], scope))
    return dict(+outcomes)


def _payouts_deliver_round(items: list[tuple[int, dict | None]], scope: Callable[[int], AbstractContextManager]) -> Counter[str]:
    """One round of `payouts_deliver`: distinct payouts, no more than there are send threads."""
    outcomes: Counter[str] = Counter()
    singles: list[tuple[int, dict | None]] = []
    plans: list[tuple[Payout, tuple[str, list], selectors.Route, tuple | None]] = []
    for payout_id, hint in items:
        if hint is None or connection.vendor != "postgresql":
            singles.append((payout_id, hint))
            continue
        payout, where = _hinted(payout_id, hint)
        route = selectors.cheapest_route(wallet_id=payout.wallet_id, amount=payout.amount)
        if route is None:
            singles.append((payout_id, hint))  # no route: payout_deliver decides what that means
            continue
        plans.append((payout, where, route, breaker_priming_take(route.provider_code)))
    claimed = _claim_many(plans, scope)
    singles.extend((payout.pk, None) for payout, *_ in plans if payout.pk not in claimed)
    sends = [(payout, claimed[payout.pk], route, primed) for payout, _, route, primed in plans if payout.pk in claimed]
    credited, answered = [], []
    for (payout, attempt, route, _), answer in zip(sends, _call_many(sends, scope), strict=True):
        if isinstance(answer, BaseException):
            # Not a provider outcome: left SENDING under our lease, as a crashed task leaves it;
            # the sweeper resolves it by inquiry.
            with scope(payout.pk):
                logger.error("payout %s: send via %s failed", payout.pk, route.provider_code, exc_info=answer)
            outcomes["error"] += 1
        elif isinstance(answer.result, Credited):
            credited.append((payout, attempt, route.provider_code, answer))
        else:
            answered.append((payout, attempt, route.provider_code, answer))
    outcomes[S.SUCCEEDED] += _succeed_many(credited, scope)
    # Every answer is recorded before any failover sends again, so no payout stays SENDING
    # behind another's retries.
    failovers = []
    for payout, attempt, code, answer in answered:
        with scope(payout.pk):
            failovers.append((payout, code, _answer_record(payout, attempt, code, answer)))
    for payout, code, outcome in failovers:
        with scope(payout.pk):
            if outcome == "refused":
                outcome = _deliver(payout, ("", []), refused={code})
            elif outcome == "skipped":
                outcome = _deliver(payout, ("", []), refused=set(), skipped={code})
        outcomes[str(outcome)] += 1
    for payout_id, hint in singles:
        with scope(payout_id):
            outcomes[str(payout_deliver(payout_id=payout_id, hint=hint))] += 1
    return outcomes


def _no_scope(payout_id: int) -> AbstractContextManager:
    return nullcontext()


def _claim_many(plans: list, scope) -> dict[int, PayoutAttempt]:
    """`_claim` of many hinted payouts (PENDING, lease 0, exactly as hinted) in one statement: each
    goes SENDING on its route with its event and its IN_FLIGHT attempt, or stays as it was.
    Returns the attempts of the payouts it took, by payout id."""
    if not plans:
        return {}
    now = _value(timezone.now())
    rows, params = [], []
    for payout, _, route, _ in plans:
        reference = payout_reference(kezbek_ref=payout.kezbek_ref, provider_code=route.provider_code)
        note = _send_note(route)
        rows.append("(%s::bigint, %s::bigint, %s::numeric, %s::text, %s::text, %s::bigint, %s::text, %s::numeric, %s::numeric, %s::text)")
        params += [payout.pk, payout.wallet_id, payout.amount, payout.msisdn, payout.kezbek_ref, route.provider_id, reference, route.fee, route.dearest_fee, note]
    event_head, event_values = _insert_from(
        _event(0, S.PENDING, S.SENDING, "", None), {"payout_id": "m.id", "note": "m.note"}, now=now
    )
    attempt_head, attempt_values = _insert_from(
        PayoutAttempt(payout_id=0, provider_id=0, kind=PayoutAttempt.Kind.SEND, reference=""),
        {"payout_id": "m.id", "provider_id": "m.provider_id", "reference": "m.reference"},
        now=now,
    )
    statement = (
        f"WITH v (id, wallet_id, amount, msisdn, kezbek_ref, provider_id, reference, fee, dearest_fee, note) AS (VALUES {', '.join(rows)}), "
        f"m AS (UPDATE {PAYOUTS} p SET status = %s, lease = p.lease + 1, provider_id = v.provider_id, reference = v.reference, "
        f"updated_at = %s, fee = v.fee, dearest_fee = v.dearest_fee, next_check_at = NULL "
        f"FROM v WHERE p.id = v.id AND p.lease = 0 AND p.status = %s AND p.wallet_id = v.wallet_id AND p.amount = v.amount "
        f"AND p.msisdn = v.msisdn AND p.transaction_id = (SELECT t.id FROM {TRANSACTIONS} t WHERE t.kezbek_ref = v.kezbek_ref) "
        f"RETURNING p.id, v.provider_id, v.reference, v.note), "
        f"e AS ({event_head} FROM m), "
        f"a AS ({attempt_head} FROM m RETURNING id, payout_id) "
        f"SELECT payout_id, id FROM a"
    )
    with connection.cursor() as cursor:
        cursor.execute(statement, [*params, S.SENDING, now, S.PENDING, *event_values, *attempt_values])
        taken = dict(cursor.fetchall())
    attempts = {}
    for payout, _, route, _ in plans:
        if payout.pk not in taken:
            continue
        reference = payout_reference(kezbek_ref=payout.kezbek_ref, provider_code=route.provider_code)
        attempt = PayoutAttempt(payout_id=payout.pk, provider_id=route.provider_id, kind=PayoutAttempt.Kind.SEND, reference=reference)
        sql.saved(attempt, taken[payout.pk])
        payout.status, payout.lease, payout.provider_id, payout.reference = S.SENDING, 1, route.provider_id, reference
        payout.fee, payout.dearest_fee, payout.next_check_at = route.fee, route.dearest_fee, None
        with scope(payout.pk):
            logger.info("payout %s %s → %s %s", payout.pk, S.PENDING, S.SENDING, _send_note(route))
        attempts[payout.pk] = attempt
    return attempts


def _send_note(route: selectors.Route) -> str:
    return f"send via {route.provider_code} (fee {route.fee}, dearest {route.dearest_fee})"


def _insert_from(template, columns: dict[str, str], *, now) -> tuple[str, list]:
    """`INSERT INTO table (every column) SELECT …`: `columns` maps some columns to SQL expressions
    over the statement's rows; the others take the template instance's values (created_at: `now`)."""
    head, values = sql.insert_parts(template)
    names = [name.strip().strip('"') for name in head[head.index("(") + 1 : -1].split(",")]
    selects, params = [], []
    for name, value in zip(names, values, strict=True):
        if name in columns:
            selects.append(columns[name])
        else:
            selects.append("%s")
            params.append(now if name == "created_at" else value)
    return f"{head} SELECT {', '.join(selects)}", params


_SEND_THREADS: tuple[int, ThreadPoolExecutor] | None = None


def _call_many(sends: list, scope) -> list:
    """`_call` for each claimed payout, in parallel threads: their answers (or what a send raised), in order."""
    global _SEND_THREADS
    if not sends:
        return []
    if len(sends) == 1:
        payout, attempt, route, primed = sends[0]
        return [_call_primed(payout, attempt, route.provider_code, selectors.wallet_code(wallet_id=payout.wallet_id), primed, scope)]
    if _SEND_THREADS is None or _SEND_THREADS[0] != os.getpid():  # never a pool inherited across a fork
        _SEND_THREADS = (os.getpid(), ThreadPoolExecutor(max_workers=settings.CEZBEK_PAYOUT_BATCH_SIZE, thread_name_prefix="payout-send"))
    futures = [
        _SEND_THREADS[1].submit(
            _call_primed, payout, attempt, route.provider_code, selectors.wallet_code(wallet_id=payout.wallet_id), primed, scope
        )
        for payout, attempt, route, primed in sends
    ]
    answers = []
    for future in futures:
        try:
            answers.append(future.result())
        except Exception as exc:  # noqa: BLE001 - reported by the caller, payout by payout
            answers.append(exc)
    return answers


def _call_primed(payout: Payout, attempt: PayoutAttempt, code: str, wallet: str, primed, scope) -> _Answer:
    breaker_priming_give(code, primed)
    with scope(payout.pk):
        return _call(payout, attempt, code, wallet=wallet)


def _succeed_many(credited: list, scope) -> int:
    """`_succeed` for many credited sends in one statement (with each attempt's outcome); then, after
    commit, one notification task for each payout with someone to tell. Returns how many moved."""
    if not credited:
        return 0
    now = _value(timezone.now())
    rows, params = [], []
    for payout, attempt, code, answer in credited:
        rows.append("(%s::bigint, %s::integer, %s::bigint, %s::text, %s::integer, %s::integer, %s::text)")
        result = answer.result
        latency_ms = int((answer.ended - answer.started) * 1000)
        params += [payout.pk, payout.lease, attempt.pk, result.provider_ref or "", result.http_status, latency_ms, f"credited by {code}"]
    event_head, event_values = _insert_from(_event(0, S.SENDING, S.SUCCEEDED, "", None), {"payout_id": "m.id", "note": "m.note"}, now=now)
    told, joins = _anyone_to_tell_sql("m")
    statement = (
        f"WITH v (id, lease, attempt_id, provider_ref, http_status, latency_ms, note) AS (VALUES {', '.join(rows)}), "
        f"a AS (UPDATE {ATTEMPTS} a SET outcome = %s, http_status = v.http_status, provider_ref = v.provider_ref, "
        f"latency_ms = v.latency_ms, message = '' FROM v WHERE a.id = v.attempt_id), "
        f"m AS (UPDATE {PAYOUTS} p SET status = %s, updated_at = %s, provider_ref = v.provider_ref, next_check_at = NULL "
        f"FROM v WHERE p.id = v.id AND p.lease = v.lease AND p.status = %s RETURNING p.id, p.transaction_id, v.note), "
        f"e AS ({event_head} FROM m) "
        f"SELECT m.id, {told} FROM m {joins}"
    )
    with connection.cursor() as cursor:
        cursor.execute(statement, [*params, O.CREDITED, S.SUCCEEDED, now, S.SENDING, *event_values])
        moved = dict(cursor.fetchall())
    for payout, _, code, answer in credited:
        if payout.pk in moved:
            with scope(payout.pk):
                logger.info("payout %s %s → %s credited by %s", payout.pk, S.SENDING, S.SUCCEEDED, code)
            payout.status, payout.provider_ref = S.SUCCEEDED, answer.result.provider_ref or ""
    tell = [payout_id for payout_id, anyone in moved.items() if anyone]
    transaction.on_commit(lambda: _publish_many(
        "wallets.payout_notify", [((payout_id,), None, scope(payout_id)) for payout_id in tell], lost=_notify_here_all,
    ))
    return len(moved)


def _deliver(payout: Payout, where: tuple[str, list], *, refused: set[str], skipped: set[str] | None = None) -> str | None:
    """The route loop: claim the cheapest route, send, fail over on refusals."""
    skipped = set() if skipped is None else skipped  # unavailable right now: not refused for good
    first = True
    while True:
        route = selectors.cheapest_route(wallet_id=payout.wallet_id, amount=payout.amount, exclude=refused | skipped)
        if route is None:
            if first and where[0]:
                return NOT_CLAIMED  # unproven hint: decide on the payout as stored
            return _no_route(payout, refused=refused, skipped=skipped)
        reference = payout_reference(kezbek_ref=payout.kezbek_ref, provider_code=route.provider_code)
        attempt = _claim(
            payout,
            expect=(S.PENDING,),
            provider_id=route.provider_id,
            reference=reference,
            kind=PayoutAttempt.Kind.SEND,
            note=_send_note(route),
            fee=route.fee,
            dearest_fee=route.dearest_fee,
            next_check_at=None,
            where=where,
        )
        if attempt is None:
            return NOT_CLAIMED if first else None  # another worker has it
        first, where = False, ("", [])
        outcome = _send(payout, attempt, route.provider_code)
        if outcome == "refused":
            refused.add(route.provider_code)
        elif outcome == "skipped":
            skipped.add(route.provider_code)
        else:
            return outcome


def _send(payout: Payout, attempt: PayoutAttempt, code: str) -> str:
    """One send; records the outcome. Returns the new status, or "refused"/"skipped" to fail over."""
    answer = _call(payout, attempt, code, wallet=selectors.wallet_code(wallet_id=payout.wallet_id))
    return _answer_record(payout, attempt, code, answer)


@dataclass(frozen=True)
class _Answer:
    """A provider's answer to one send: Credited or Pending, or the failure it raised."""

    result: object
    started: float
    ended: float


def _call(payout: Payout, attempt: PayoutAttempt, code: str, *, wallet: str) -> _Answer:
    """Asks the provider, through its breaker, to credit the payout. Touches no database, so that
    `payouts_deliver` can run it in other threads; a failure that is none of the provider's
    outcomes (a bug) is raised."""
    client = get_client(code)
    started = time.monotonic()
    try:
        result = breaker_for(code).call(
            client.send,
            reference=attempt.reference,
            wallet=wallet,
            msisdn=payout.msisdn,
            amount=payout.amount,
            notes=f"Kezbek cashback {payout.kezbek_ref}",
            callback_url=_callback_url(code),
        )
    except (pybreaker.CircuitBreakerError, Refused, Unknown) as exc:  # Unavailable is a Refused
        result = exc
    return _Answer(result, started, time.monotonic())


def _answer_record(payout: Payout, attempt: PayoutAttempt, code: str, answer: _Answer) -> str:
    """Records a send's answer and moves the payout accordingly; returns as `_send` does."""
    result, timing = answer.result, {"started": answer.started, "ended": answer.ended}
    if isinstance(result, pybreaker.CircuitBreakerError):
        finish = _finish_sql(attempt, O.BREAKER_OPEN, **timing, message="circuit open: not sent")
        return _back_to_pending(payout, f"{code} breaker open, not sent", skipped=True, finish=finish)
    if isinstance(result, Unavailable):
        finish = _finish_sql(attempt, O.UNAVAILABLE, **timing, http_status=result.http_status, message=result.reason)
        return _back_to_pending(payout, f"{code} unavailable: {result.reason}", skipped=True, finish=finish)
    if isinstance(result, Refused):
        finish = _finish_sql(attempt, O.REFUSED, **timing, http_status=result.http_status, message=result.reason)
        return _back_to_pending(payout, f"{code} refused: {result.reason}", skipped=False, finish=finish)
    if isinstance(result, Unknown):
        finish = _finish_sql(attempt, O.UNKNOWN, **timing, http_status=result.http_status, message=result.reason)
        return _unknown(payout, get_client(code), f"{code} unknown outcome: {result.reason}", finish=finish)
    if isinstance(result, Credited):
        finish = _finish_sql(attempt, O.CREDITED, **timing, http_status=result.http_status, provider_ref=result.provider_ref)
        _succeed(payout, f"credited by {code}", provider_ref=result.provider_ref, finish=finish)
        return S.SUCCEEDED
    finish = _finish_sql(attempt, O.PENDING, **timing, http_status=result.http_status, provider_ref=result.provider_ref or "")
    return _await_callback(payout, f"{code} pending: waiting for its callback", provider_ref=result.provider_ref or "", finish=finish)


def _callback_url(code: str) -> str | None:
    if code != "XENIT":
        return None
    return f"{settings.CEZBEK_PUBLIC_URL}/api/v1/providers/xenit/callback"


# Each outcome's `finish` (the UPDATE of _finish_sql) writes the attempt row's outcome in the same
# commit as the payout's move (`_move(…, also=finish)`): on PostgreSQL the same statement.


def _back_to_pending(payout: Payout, note: str, *, skipped: bool, finish: tuple[str, list] | None = None) -> str:
    if not _move(payout, S.PENDING, expect=(S.SENDING,), note=note, also=finish):
        return "lost"
    return "skipped" if skipped else "refused"


def _succeed(payout: Payout, note: str, *, provider_ref: str, expect=(S.SENDING,), finish: tuple[str, list] | None = None) -> bool:
    done = _move(
        payout, S.SUCCEEDED, expect=expect, note=note, provider_ref=provider_ref or payout.provider_ref, next_check_at=None, also=finish
    )
    if done:
        transaction.on_commit(lambda: _after_terminal(payout.pk))  # at once, unless a caller's transaction is open
    return done


def _await_callback(payout: Payout, note: str, *, provider_ref: str, finish: tuple[str, list] | None = None) -> str:
    check_at = timezone.now() + timedelta(seconds=settings.CEZBEK_CALLBACK_WAIT_SECONDS)
    with transaction.atomic():
        moved = _move(
            payout, S.AWAITING_CALLBACK, expect=(S.SENDING,), note=note, provider_ref=provider_ref, next_check_at=check_at, also=finish
        )
        if not moved:
            return "lost"
        transaction.on_commit(
            lambda: payout_enqueue(payout_id=payout.pk, countdown=settings.CEZBEK_CALLBACK_WAIT_SECONDS, resolve=True)
        )
    return S.AWAITING_CALLBACK


def _unknown(payout: Payout, client, note: str, *, finish: tuple[str, list] | None = None) -> str:
    """The money may have moved. Inquire after the grace period, or hand to a person when we can't."""
    with transaction.atomic():
        if not (client.supports_inquiry and client.idempotent):
            note = f"{note}; {client.code} has no status inquiry: never re-sent"
            moved = _move(payout, S.MANUAL_REVIEW, expect=(S.SENDING,), note=note, next_check_at=None, also=finish)
            if moved:
                transaction.on_commit(lambda: _after_terminal(payout.pk))
            return S.MANUAL_REVIEW if moved else "lost"
        grace = settings.CEZBEK_UNKNOWN_GRACE_SECONDS
        check_at = timezone.now() + timedelta(seconds=grace)
        if not _move(payout, S.UNKNOWN, expect=(S.SENDING,), note=note, next_check_at=check_at, also=finish):
            return "lost"
        transaction.on_commit(lambda: payout_enqueue(payout_id=payout.pk, countdown=grace, resolve=True))
    return S.UNKNOWN


def _no_route(payout: Payout, *, refused: set[str], skipped: set[str]) -> str:
    """No route left: FAILED when every route refused it; otherwise wait for a provider to recover."""
    with transaction.atomic():
        candidates = {c[2] for c in selectors.route_candidates(wallet_id=payout.wallet_id, amount=payout.amount)}
        if candidates and candidates <= refused:
            if _move(payout, S.FAILED, expect=(S.PENDING,), note=f"refused by every route: {', '.join(sorted(refused))}", next_check_at=None):
                transaction.on_commit(lambda: _after_terminal(payout.pk))
                return S.FAILED
            return "lost"
        # Breakers open or providers unavailable: nothing moved; try again later.
        step = Payout.objects.filter(pk=payout.pk).values_list("lease", flat=True).first() or 0
        delay = _backoff(min(step, 6))
        Payout.objects.filter(pk=payout.pk, status=S.PENDING).update(next_check_at=timezone.now() + timedelta(seconds=delay))
        transaction.on_commit(lambda: payout_enqueue(payout_id=payout.pk, countdown=delay))
    logger.warning("payout %s: no healthy route (skipped %s); retry in %ss", payout.pk, sorted(skipped), delay)
    return S.PENDING


def _after_terminal(payout_id: int) -> None:
    """Queues what follows a terminal state (DOMAIN.md §6): the partner webhook and the customer email.

    Runs on commit in the delivery path: one publish, nothing sent from here (wallets.payout_notify
    records and sends them, once each). When the broker refuses it, they are recorded here.
    """
    from wallets.tasks import payout_notify

    if not _anyone_to_tell(payout_id):
        return  # no customer email, no partner webhook: no task to run
    try:
        payout_notify.apply_async((payout_id,))
    except KombuError:
        logger.exception("could not queue the notifications of payout %s (webhook, email); recording them here", payout_id)
        _notify_here(payout_id)


def _notify_here_all(calls: list) -> None:
    for (payout_id,), _, _ in calls:  # (the calls' contexts are single-use: not entered again)
        _notify_here(payout_id)


def _notify_here(payout_id: int) -> None:
    """The broker is down: records the payout's webhook and email in this process instead, so that
    neither is lost, without trying that broker again. A recorded webhook is sent by the periodic
    `partners.webhooks_retry_due`, a PENDING email by `wallets.emails_send_stranded`."""
    from wallets import notifications

    try:
        notifications.payout_notify(payout_id=payout_id, enqueue=False)
    except Exception:  # the payout's own outcome is committed; the next payout's must be recorded too
        logger.exception("could not record the notifications of payout %s", payout_id)


def _anyone_to_tell(payout_id: int) -> bool:
    """Whether the purchase gave an email or its partner has a webhook URL: one indexed read, cheaper
    than a notification task that would find nothing to do."""
    told, joins = _anyone_to_tell_sql("p")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {told} FROM {PAYOUTS} p {joins} WHERE p.id = %s", [payout_id])
        row = cursor.fetchone()
    return row is not None and bool(row[0])


def _anyone_to_tell_sql(payouts: str) -> tuple[str, str]:
    """The SQL of `_anyone_to_tell` for rows of payouts named `payouts`: (the expression, its JOINs).
    Shared with `_succeed_many`, which asks it of a whole batch in its own statement."""
    from partners.models import Partner

    partners = connection.ops.quote_name(Partner._meta.db_table)
    return (
        "(t.email <> '' OR COALESCE(pa.webhook_url, '') <> '')",
        f"JOIN {TRANSACTIONS} t ON t.id = {payouts}.transaction_id JOIN {partners} pa ON pa.id = t.partner_id",
    )


# --- resolving unknown and pending outcomes ---------------------------------------------------


def payout_resolve(*, payout_id: int) -> str | None:
    """Finds out by status inquiry what happened to an UNKNOWN or AWAITING_CALLBACK payout, and acts on it."""
    payout = Payout.objects.select_related("provider", "transaction").filter(pk=payout_id).first()
    if payout is None or payout.status not in RESOLVABLE:
        return None
    payout.kezbek_ref = payout.transaction.kezbek_ref
    if payout.next_check_at and payout.next_check_at > timezone.now() + timedelta(seconds=1):
        return None  # early: a later task or the sweeper will come back
    code = payout.provider.code
    client = get_client(code)
    if payout.checks >= settings.CEZBEK_RESOLVE_MAX_CHECKS or not client.supports_inquiry:
        with transaction.atomic():
            if _move(payout, S.MANUAL_REVIEW, expect=RESOLVABLE, note=f"outcome still unknown after {payout.checks} inquiries", next_check_at=None):
                transaction.on_commit(lambda: _after_terminal(payout.pk))
                return S.MANUAL_REVIEW
        return None
    previous = payout.status
    attempt = _claim(
        payout,
        expect=RESOLVABLE,
        provider_id=payout.provider_id,
        reference=payout.reference,
        kind=PayoutAttempt.Kind.INQUIRY,
        note=f"status inquiry at {code}",
        checks=INCREMENT,
    )
    if attempt is None:
        return None
    started = time.monotonic()
    try:
        result = client.inquire(reference=attempt.reference)
    except TransferNotFound as exc:
        # Nothing moved (and the grace period has passed): it may be sent again.
        with transaction.atomic():
            _finish_attempt(attempt, O.NOT_FOUND, started=started, http_status=exc.http_status, message=exc.reason)
            if _move(payout, S.PENDING, expect=(S.SENDING,), note=f"{code} has no such transfer: nothing moved, send again"):
                transaction.on_commit(lambda: payout_enqueue(payout_id=payout.pk))
                return S.PENDING
        return None
    except Refused as exc:
        with transaction.atomic():
            _finish_attempt(attempt, O.REFUSED, started=started, http_status=exc.http_status, message=exc.reason)
            if _move(payout, S.PENDING, expect=(S.SENDING,), note=f"{code} reports the transfer failed: next route"):
                transaction.on_commit(lambda: payout_enqueue(payout_id=payout.pk))
                return S.PENDING
        return None
    except ProviderError as exc:  # Unknown: the inquiry itself failed
        delay = _backoff(payout.checks)
        with transaction.atomic():
            _finish_attempt(attempt, O.UNKNOWN, started=started, http_status=exc.http_status, message=exc.reason)
            if _move(payout, previous, expect=(S.SENDING,), note=f"inquiry failed: {exc.reason}; again in {delay:.0f}s", next_check_at=timezone.now() + timedelta(seconds=delay)):
                transaction.on_commit(lambda: payout_enqueue(payout_id=payout.pk, countdown=delay, resolve=True))
                return previous
        return None
    if isinstance(result, Credited):
        finish = _finish_sql(attempt, O.CREDITED, started=started, http_status=result.http_status, provider_ref=result.provider_ref)
        return S.SUCCEEDED if _succeed(payout, f"{code} inquiry: credited", provider_ref=result.provider_ref, finish=finish) else None
    delay = _backoff(payout.checks)
    with transaction.atomic():
        _finish_attempt(attempt, O.PENDING, started=started, http_status=result.http_status, provider_ref=result.provider_ref or "")
        if _move(payout, S.AWAITING_CALLBACK, expect=(S.SENDING,), note=f"{code} inquiry: still pending", next_check_at=timezone.now() + timedelta(seconds=delay)):
            transaction.on_commit(lambda: payout_enqueue(payout_id=payout.pk, countdown=delay, resolve=True))
            return S.AWAITING_CALLBACK
    return None


# --- provider callbacks ------------------------------------------------------------------------


def payout_callback_record(*, provider_code: str, reference: str, succeeded: bool, provider_ref: str, amount: Decimal, message: str = "") -> Payout:
    """A provider's asynchronous final result. Never moves a payout out of a terminal state.

    Raises NotFound for a reference we never sent.
    """
    attempt = (
        PayoutAttempt.objects.select_related("payout", "provider")
        .filter(provider__code=provider_code, reference=reference, kind=PayoutAttempt.Kind.SEND)
        .first()
    )
    if attempt is None:
        logger.warning("callback from %s for unknown reference %s refused", provider_code, reference)
        raise NotFound(f"No payout with reference {reference!r} at {provider_code}.")
    payout = attempt.payout
    PayoutAttempt.objects.create(
        payout=payout,
        provider=attempt.provider,
        kind=PayoutAttempt.Kind.CALLBACK,
        reference=reference,
        outcome=O.CREDITED if succeeded else O.REFUSED,
        provider_ref=provider_ref or "",
        message=message[:300],
    )
    if payout.status in Payout.TERMINAL:
        logger.info("callback for payout %s in terminal state %s: nothing to do", payout.pk, payout.status)
        return payout
    if payout.provider_id != attempt.provider_id or payout.reference != reference:
        logger.warning("callback for payout %s names a route it is no longer on: recorded only", payout.pk)
        return payout
    live = (S.AWAITING_CALLBACK, S.UNKNOWN, S.SENDING)
    if succeeded and amount != payout.amount:
        with transaction.atomic():
            if _move(payout, S.MANUAL_REVIEW, expect=live, note=f"{provider_code} callback credited {amount}, payout is {payout.amount}", next_check_at=None):
                transaction.on_commit(lambda: _after_terminal(payout.pk))
        return payout
    if succeeded:
        _succeed(payout, f"{provider_code} callback: credited", provider_ref=provider_ref, expect=live)
        return payout
    with transaction.atomic():
        if _move(payout, S.PENDING, expect=live, note=f"{provider_code} callback: failed ({message}); next route"):
            transaction.on_commit(lambda: payout_enqueue(payout_id=payout.pk))
    return payout


# --- the sweeper -------------------------------------------------------------------------------


def payout_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Resumes payouts a crash or a lost message left behind. Returns how many of each it touched."""
    now = now or timezone.now()
    counts = {"pending": 0, "stale_sending": 0, "resolve": 0}
    stale = now - timedelta(seconds=settings.CEZBEK_SENDING_STALE_SECONDS)
    for payout in Payout.objects.select_related("provider").filter(status=S.SENDING, updated_at__lt=stale)[:500]:
        client = get_client(payout.provider.code)
        with transaction.atomic():
            if client.supports_inquiry and client.idempotent:
                moved = _move(payout, S.UNKNOWN, expect=(S.SENDING,), note="worker lost mid-conversation: inquire before anything else", next_check_at=now)
            else:
                moved = _move(payout, S.MANUAL_REVIEW, expect=(S.SENDING,), note=f"worker lost while sending via {payout.provider.code}, which has no inquiry", next_check_at=None)
            if moved:
                PayoutAttempt.objects.filter(payout=payout, outcome=O.IN_FLIGHT).update(outcome=O.UNKNOWN, message="worker lost")
                counts["stale_sending"] += 1
    for payout_id in selectors.payouts_due(statuses=RESOLVABLE, now=now):
        payout_enqueue(payout_id=payout_id, resolve=True)
        counts["resolve"] += 1
    idle = now - timedelta(seconds=settings.CEZBEK_PENDING_IDLE_SECONDS)
    pending = (
        Payout.objects.filter(status=S.PENDING, updated_at__lt=idle)
        .exclude(next_check_at__gt=now)
        .values_list("id", flat=True)[:500]
    )
    for payout_id in pending:
        payout_enqueue(payout_id=payout_id)
        counts["pending"] += 1
    if any(counts.values()):
        logger.info("sweeper: %s", counts)
    return counts


# --- operators ---------------------------------------------------------------------------------


def payout_retry(*, payout: Payout, actor, note: str = "") -> Payout:
    """FAILED → PENDING (an operator's decision, audited): every route is tried afresh."""
    if payout.status != S.FAILED:
        raise ValidationFailed.for_field("status", f"Only a FAILED payout can be retried; this one is {payout.status}.")
    with transaction.atomic():
        # Refusals before this moment no longer bar their routes: the operator says try again.
        if not _move(payout, S.PENDING, expect=(S.FAILED,), note=note or "retried by an operator", actor=actor, next_check_at=None, retried_at=timezone.now()):
            raise CezbekError("The payout changed meanwhile; reload and try again.")
        transaction.on_commit(lambda: payout_enqueue(payout_id=payout.pk))
    return payout


def payout_cancel(*, payout: Payout, actor, note: str = "") -> Payout:
    """PENDING or HELD → CANCELLED, before anything was sent (audited)."""
    if payout.status not in (S.PENDING, S.HELD):
        raise ValidationFailed.for_field("status", f"Only a payout not yet sent can be cancelled; this one is {payout.status}.")
    if payout.status == S.PENDING and PayoutAttempt.objects.filter(payout=payout).exclude(outcome__in=[O.REFUSED, O.UNAVAILABLE, O.BREAKER_OPEN, O.NOT_FOUND]).exists():
        raise ValidationFailed.for_field("status", "This payout has been sent before; it cannot be cancelled.")
    with transaction.atomic():
        if not _move(payout, S.CANCELLED, expect=(S.PENDING, S.HELD), note=note or "cancelled by an operator", actor=actor, next_check_at=None):
            raise CezbekError("The payout changed meanwhile; reload and try again.")
        transaction.on_commit(lambda: _after_terminal(payout.pk))
    return payout


def payout_resolve_manually(*, payout: Payout, actor, succeeded: bool, note: str) -> Payout:
    """MANUAL_REVIEW → SUCCEEDED or FAILED, with the operator's required note (audited)."""
    if payout.status != S.MANUAL_REVIEW:
        raise ValidationFailed.for_field("status", f"Only a payout in MANUAL_REVIEW can be resolved; this one is {payout.status}.")
    if not note or not note.strip():
        raise ValidationFailed.for_field("note", "Say what you found: a note is required.")
    to = S.SUCCEEDED if succeeded else S.FAILED
    with transaction.atomic():
        if not _move(payout, to, expect=(S.MANUAL_REVIEW,), note=note.strip(), actor=actor):
            raise CezbekError("The payout changed meanwhile; reload and try again.")
        transaction.on_commit(lambda: _after_terminal(payout.pk))
    return payout


# --- reconciliation (DOMAIN.md §7) ---------------------------------------------------------------


def payout_settle_found_paid(*, payout: Payout, provider_ref: str, note: str, actor=None) -> bool:
    """UNKNOWN or MANUAL_REVIEW → SUCCEEDED: the provider's settlement file shows the credit.

    `note` cites the evidence (settlement run, file and line). A conditional update under the payout's
    lease, which it also bumps so that no worker still holding the old lease can write. Returns False,
    changing nothing, when the payout is no longer UNKNOWN or MANUAL_REVIEW.
    """
    if not note or not note.strip():
        raise ValidationFailed.for_field("note", "Cite the evidence: a note is required.")
    with transaction.atomic():
        moved = _move(
            payout,
            S.SUCCEEDED,
            expect=(S.UNKNOWN, S.MANUAL_REVIEW),
            note=note.strip(),
            actor=actor,
            provider_ref=provider_ref or payout.provider_ref,
            next_check_at=None,
            lease=INCREMENT,
        )
        if moved:
            transaction.on_commit(lambda: _after_terminal(payout.pk))
    return moved
