"""The set-based chunk recorder (cashback/batch_record.py) against the single-purchase path.

One file, recorded twice from the same starting books: once by the batch's chunks, once row by row
through `transaction_record` (what `POST /api/v1/cashbacks` does), in the same order. Every row's
outcome and every row each path wrote must be the same: transactions, loyalty states and journeys,
payouts (HELD ones too) and their events.
"""

import random
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from cashback import batches
from cashback.models import Batch, BatchRow, CashbackRule, Transaction
from cashback.services import transaction_record
from cashback.tasks import batch_chunk
from cezbek.errors import Conflict, ValidationFailed
from loyalty.models import JourneyEntry, LoyaltyState
from wallets.models import Payout, PayoutEvent

HEADER = "partner_ref,msisdn,email,quantity,amount,wallet\n"


def a_file(rnd: random.Random) -> str:
    """300 rows of 25 customers: enough to promote, repeats of stored and of earlier rows, conflicts, bad rows."""
    customers = [f"6281300{n:05d}" for n in range(25)]
    lines = []
    for i in range(300):
        draw = rnd.random()
        if draw < 0.04 and lines:
            lines.append(rnd.choice(lines))  # the same purchase again (often in the same chunk)
            continue
        msisdn = rnd.choice(customers)
        amount = f"{rnd.randint(10_000, 900_000)}.{rnd.randint(0, 99):02d}"
        ref = f"EQ/{i}"
        if draw < 0.06:
            ref = "OLD/1"  # a purchase stored before the upload: duplicate only with the same content
        elif draw < 0.08 and lines:
            ref = rnd.choice(lines).split(",")[0]  # an earlier row's reference with other content: conflict
        elif draw > 0.98:
            amount = "-" + amount
        elif draw > 0.97:
            msisdn = "12345"
        wallet = rnd.choice(["LSAJA", "GPAID", "JOSVO", "lsaja", "OVO" if draw > 0.965 else "JOSVO"])
        email = f"c{i}@example.id" if rnd.random() < 0.3 else ""
        lines.append(f"{ref},{msisdn},{email},{rnd.randint(1, 5)},{amount},{wallet}\n")
    return HEADER + "".join(lines)


def by_batch(partner, body: str) -> None:
    batch = batches.batch_create(partner=partner, data=body.encode(), source=Batch.Source.API)
    for number in range(batch.chunks):
        assert batch_chunk(batch.pk, number) == "done"


def one_by_one(partner, body: str) -> None:
    """The rows in the order the chunks take them, each through the single-purchase path."""
    batch = batches.batch_create(partner=partner, data=body.encode(), source=Batch.Source.API)
    for row in BatchRow.objects.filter(batch=batch).order_by("chunk", "number"):
        if row.error_code:
            row.outcome = BatchRow.Outcome.FAILED
        else:
            try:
                txn, created = transaction_record(partner=partner, purchase=batches.purchase_from_row(row))
            except (ValidationFailed, Conflict) as error:
                row.outcome, row.error_code, row.error_message = BatchRow.Outcome.FAILED, error.code, error.message
                row.error_field = ";".join(error.fields) if error.fields else ("partner_ref" if isinstance(error, Conflict) else "")
            else:
                row.outcome, row.transaction = (BatchRow.Outcome.ACCEPTED if created else BatchRow.Outcome.DUPLICATE), txn
        row.save()


def books(t0) -> dict:
    """Everything both paths write, ids replaced by partner_ref / MSISDN and times by hours from t0."""

    def hours(moment):
        return None if moment is None else round((moment - t0).total_seconds() / 3600)

    rows = [
        (r.number, r.outcome, r.error_code, r.error_field, r.error_message, r.transaction.partner_ref if r.transaction else None)
        for r in BatchRow.objects.select_related("transaction").order_by("batch_id", "number")
        if r.batch.source == Batch.Source.API
    ]
    txns = sorted(
        (t.partner_ref, t.msisdn, t.email, t.quantity, t.amount, t.wallet.code, t.rule_id, t.cashback, t.reward, t.total,
         t.tier.name, t.tier_count, hours(t.tier_expires_at))
        for t in Transaction.objects.select_related("wallet", "tier")
    )
    states = sorted(
        (s.msisdn, s.tier.name, s.count, hours(s.entered_at), hours(s.expires_at)) for s in LoyaltyState.objects.select_related("tier")
    )
    journey = sorted(
        (j.state.msisdn, j.transaction.partner_ref if j.transaction else None, j.reason, j.tier_before.name, j.tier_after.name,
         j.count, j.reward, hours(j.expires_at))
        for j in JourneyEntry.objects.select_related("state", "transaction", "tier_before", "tier_after")
    )
    payouts = sorted(
        (p.transaction.partner_ref, p.msisdn, p.wallet.code, p.amount, p.status, p.flags)
        for p in Payout.objects.select_related("transaction", "wallet")
    )
    events = sorted((e.payout.transaction.partner_ref, e.from_status, e.to_status, e.note) for e in PayoutEvent.objects.select_related("payout__transaction"))
    return {"rows": rows, "transactions": txns, "states": states, "journey": journey, "payouts": payouts, "events": events}


@pytest.mark.parametrize("seed", [1, 2])
def test_a_chunk_records_exactly_what_the_single_purchase_path_would(wallets, ladder, global_rule, partner, settings, seed):
    partner, _ = partner
    settings.CEZBEK_BATCH_CHUNK_SIZE = 40  # several chunks, each with several customers
    settings.CEZBEK_VELOCITY_LIMIT = Decimal("40000.00")  # some customers go over it: HELD payouts
    CashbackRule.objects.create(
        name="big baskets", partner=partner, min_quantity=3, percentage=Decimal("2.5"), max_cashback=Decimal("9000.00"),
        valid_from=timezone.now() - timedelta(days=1),
    )
    t0 = timezone.now()
    # given books that already hold purchases of some of the file's customers (stored repeats, loyalty, velocity)
    from cashback.services import Purchase

    for i, msisdn in enumerate(["628130000000", "628130000003", "628130000007"]):
        ref = "OLD/1" if i == 0 else f"OLD/{i + 1}"
        transaction_record(partner=partner, purchase=Purchase(ref, msisdn, 2, Decimal("300000.00"), "LSAJA"))
    body = a_file(random.Random(seed))

    # when the file is recorded by the batch's chunks, and, from the same books, row by row
    point = transaction.savepoint()
    by_batch(partner, body)
    batched = books(t0)
    transaction.savepoint_rollback(point)
    one_by_one(partner, body)
    single = books(t0)

    # then both wrote the same rows
    outcomes = {outcome for _, outcome, *_ in batched["rows"]}
    assert outcomes == {"accepted", "duplicate", "failed"}
    assert {"HELD", "PENDING"} <= {status for *_, status, _ in batched["payouts"]}
    assert any(reason == "PROMOTED" for _, _, reason, *_ in batched["journey"])
    for part in batched:
        assert batched[part] == single[part], part
