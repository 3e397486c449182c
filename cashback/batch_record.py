"""Recording one chunk of a batch set-based: the single-purchase rules, a few statements per chunk.

`transaction_record` (the API's path) spends four round trips per purchase (a transaction of its
own, the lock query string, the one writing statement). Inside a batch's transaction each row
would also need a savepoint, to survive a duplicate's failed insert. A chunk holds every row of
its customers (batches.chunks_plan), so here the same decisions are taken row by row, in file
order, in Python — with the same functions: validation, rule matching, cashback arithmetic, the
loyalty rules, the velocity limit — while the database work is done once per chunk:

1. the chunk's existing partner_refs are read in one query, so a repeated purchase is a duplicate
   (or a conflict) without an insert that fails: no savepoint per row;
2. the customers' loyalty states are created where missing and locked in one statement each;
3. the velocity advisory locks are taken for all the chunk's MSISDNs (sorted, after the loyalty
   locks as on the single path), then their window totals are read in one query;
4. transactions, journey entries, payouts and their events are inserted with one multi-row
   INSERT per table, and the changed loyalty states updated in one pipelined batch.

Every row of the chunk is recorded at the same moment (`now`), as PostgreSQL's own `now()` is one
moment for a whole transaction. A concurrent insert of one of the chunk's partner_refs (the API, or
another batch racing for it) fails the chunk's transaction whole; the task runs it again and then
finds that purchase in step 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connection

from cashback.models import BatchRow, Transaction
from cashback.services import Purchase, partner_ref_conflict, same_purchase, transaction_new, unknown_wallet, wallet_id_of
from cezbek.errors import CezbekError, Conflict, ValidationFailed
from loyalty import rules
from loyalty.models import JourneyEntry, LoyaltyState
from loyalty.services import journey_entries, loyalty_ladder, loyalty_state_new, loyalty_states_lock, standing_apply, standing_of
from wallets.models import Payout, PayoutEvent
from wallets.selectors import wallet_active
from wallets.services import (
    PAYOUTS,
    VELOCITY_LOCK,
    payout_created_note,
    payout_held_log,
    payout_hint,
    payout_new,
    velocity_window_start,
)

O = BatchRow.Outcome
S = Payout.Status


@dataclass
class _Accepted:
    row: BatchRow
    purchase: Purchase
    wallet: object

    def stored(self) -> Transaction:
        """What the transaction will hold of the purchase, for comparing a repeat with it."""
        p = self.purchase
        return Transaction(msisdn=p.msisdn, quantity=p.quantity, amount=p.amount, wallet_id=self.wallet.id, email=p.email)


def chunk_record(*, rows: list[BatchRow], partner, now: datetime, purchase_of) -> list[tuple[int, dict]]:
    """Records the chunk's rows (outcomes set on them, not saved); returns the payouts to queue
    after commit as (payout id, hint). `purchase_of(row)` validates a row's cells (raises
    ValidationFailed). Call inside the chunk's transaction."""
    accepted, repeats = _accept(rows, partner, purchase_of)
    if not accepted:
        return []
    ladder = loyalty_ladder()
    states = _states_lock(ladder, partner.pk, sorted({a.purchase.msisdn for a in accepted}), now)
    standings = {msisdn: standing_of(ladder, state) for msisdn, state in states.items()}

    transactions, steps_of = [], []
    for item in accepted:
        msisdn = item.purchase.msisdn
        after, steps, reward = rules.purchase(ladder, standings[msisdn], now)
        standings[msisdn] = after
        transactions.append(
            transaction_new(partner=partner, purchase=item.purchase, wallet=item.wallet, after=after, reward=reward, now=now)
        )
        steps_of.append(steps)
    Transaction.objects.bulk_create(transactions)
    for item, txn in zip(accepted, transactions, strict=True):
        item.row.outcome, item.row.transaction = O.ACCEPTED, txn
    for row, earlier in repeats:
        row.transaction = earlier.row.transaction

    entries: list[JourneyEntry] = []
    for txn, steps in zip(transactions, steps_of, strict=True):
        entries.extend(journey_entries(state=states[txn.msisdn], steps=steps, transaction_id=txn.pk))
    JourneyEntry.objects.bulk_create(entries)
    for msisdn, state in states.items():
        standing_apply(state, standings[msisdn])
    _states_write(list(states.values()), now)

    return _payouts_create([txn for txn in transactions if txn.total > 0], now)


def _accept(rows: list[BatchRow], partner, purchase_of) -> tuple[list[_Accepted], list[tuple[BatchRow, _Accepted]]]:
    """Validates the rows in file order and sets the outcome of those that fail or repeat a stored
    purchase. Returns the purchases to record, and the rows repeating one of them (with it)."""
    candidates = []
    for row in rows:
        if row.error_code:  # its shape was wrong at upload
            row.outcome = O.FAILED
            continue
        try:
            purchase = purchase_of(row)
        except ValidationFailed as error:
            _failed(row, error)
            continue
        # None: unknown or inactive, which only a repeat of a stored purchase gets past (below)
        candidates.append(_Accepted(row, purchase, wallet_active(code=purchase.wallet)))
    stored = {
        txn.partner_ref: txn
        for txn in Transaction.objects.filter(partner=partner, partner_ref__in={item.purchase.partner_ref for item in candidates})
    }
    accepted: dict[str, _Accepted] = {}
    repeats = []
    for item in candidates:
        ref = item.purchase.partner_ref
        earlier = stored.get(ref) or accepted.get(ref)
        if item.wallet is None and earlier is None:
            _failed(item.row, unknown_wallet(item.purchase))
        elif earlier is None:
            accepted[ref] = item
        elif not same_purchase(earlier.stored() if isinstance(earlier, _Accepted) else earlier, item.purchase, wallet_id_of(item.purchase)):
            _failed(item.row, partner_ref_conflict(ref))
        elif isinstance(earlier, _Accepted):  # a repeat of a row of this chunk: its transaction is not stored yet
            item.row.outcome = O.DUPLICATE
            repeats.append((item.row, earlier))
        else:
            item.row.outcome, item.row.transaction = O.DUPLICATE, earlier
    return list(accepted.values()), repeats


def _failed(row: BatchRow, error: CezbekError) -> None:
    row.outcome = O.FAILED
    row.error_code = error.code
    row.error_field = ";".join(error.fields) if error.fields else ("partner_ref" if isinstance(error, Conflict) else "")
    row.error_message = error.message


def _states_lock(ladder: rules.Ladder, partner_id: int, msisdns: list[str], now: datetime) -> dict[str, LoyaltyState]:
    """The customers' loyalty states, created where missing, locked until the chunk commits."""
    states = loyalty_states_lock(partner_id=partner_id, msisdns=msisdns)
    missing = [m for m in msisdns if m not in states]
    if missing:
        # A concurrent first purchase may insert one meanwhile: its row is kept and locked below.
        LoyaltyState.objects.bulk_create(
            [loyalty_state_new(ladder=ladder, partner_id=partner_id, msisdn=m, now=now) for m in missing], ignore_conflicts=True
        )
        states.update(loyalty_states_lock(partner_id=partner_id, msisdns=missing))
    return states


def _states_write(states: list[LoyaltyState], now: datetime) -> None:
    table = connection.ops.quote_name(LoyaltyState._meta.db_table)
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {table} SET tier_id = %s, count = %s, entered_at = %s, expires_at = %s, updated_at = %s WHERE id = %s",
            [(s.tier_id, s.count, adapt(s.entered_at), adapt(s.expires_at), adapt(now), s.pk) for s in states],
        )


def _window_totals(msisdns: list[str], now: datetime) -> dict[str, Decimal]:
    """Each MSISDN's payouts within the velocity window (wallets.services.velocity_statements),
    read after taking its advisory lock; the locks in MSISDN order, so chunks never deadlock on them."""
    totals = dict.fromkeys(msisdns, Decimal("0.00"))
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT count(pg_advisory_xact_lock(%s, hashtext(m))) FROM unnest(%s::text[]) AS m",
                [VELOCITY_LOCK, msisdns],
            )
        cursor.execute(
            f"SELECT msisdn, COALESCE(SUM(amount), 0) FROM {PAYOUTS} WHERE msisdn IN ({', '.join(['%s'] * len(msisdns))}) "
            f"AND created_at >= %s AND status NOT IN (%s, %s) GROUP BY msisdn",
            [*msisdns, connection.ops.adapt_datetimefield_value(velocity_window_start(now)), S.FAILED, S.CANCELLED],
        )
        for msisdn, total in cursor.fetchall():
            totals[msisdn] = Decimal(total).quantize(Decimal("0.01"))
    return totals


def _payouts_create(transactions: list[Transaction], now: datetime) -> list[tuple[int, dict]]:
    """The transactions' payouts (HELD over the velocity limit) with their first events."""
    if not transactions:
        return []
    totals = _window_totals(sorted({txn.msisdn for txn in transactions}), now)
    payouts, seen = [], []
    for txn in transactions:
        payout = payout_new(transaction_obj=txn, amount=txn.total, now=now, window_total=totals[txn.msisdn])
        seen.append(totals[txn.msisdn])
        totals[txn.msisdn] += txn.total  # HELD counts too, as on the single path
        payouts.append(payout)
    Payout.objects.bulk_create(payouts)
    notes = [payout_created_note(payout, total) for payout, total in zip(payouts, seen, strict=True)]
    PayoutEvent.objects.bulk_create(
        PayoutEvent(payout_id=payout.pk, from_status="", to_status=payout.status, note=note[:2000], created_at=now)
        for payout, note in zip(payouts, notes, strict=True)
    )
    for payout, note in zip(payouts, notes, strict=True):
        if payout.status == S.HELD:
            payout_held_log(payout, note)
    return [(p.pk, payout_hint(p, kezbek_ref=p.transaction.kezbek_ref)) for p in payouts if p.status == S.PENDING]
