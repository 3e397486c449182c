"""Many transactions with their payouts, bulk-inserted, for tests of the admin over large books.

The rows vary in a fixed pattern, so tests can say exactly which rows a filter or a search must
return: see `books_create`.
"""

import base64
from datetime import datetime, timedelta
from decimal import Decimal

from cashback.models import Transaction
from wallets.models import Payout

STATUS_CYCLE = [Payout.Status.SUCCEEDED, Payout.Status.FAILED, Payout.Status.PENDING, Payout.Status.MANUAL_REVIEW, Payout.Status.HELD]


def kezbek_ref_of(i: int) -> str:
    return "KZ" + base64.b32encode(i.to_bytes(15, "big")).decode()


def msisdn_of(i: int) -> str:
    return f"62812{i:08d}"


def books_create(*, start: int, count: int, partners, wallets, tier, since: datetime, step=timedelta(minutes=1), providers=()):
    """Transactions numbered start … start + count - 1 (partner_ref `INV/<i>`, kezbek_ref_of(i), msisdn_of(i),
    amount 10,000 + i, created `since + i × step`), round-robin over `partners` and `wallets`.

    Every 10th (i % 10 == 0) earned nothing: cashback and reward 0, no payout. The others earn 1 % cashback
    (+ 5,000 reward when i % 5 == 4) and have a payout in STATUS_CYCLE[i % 5], on providers[i % len] when
    providers are given (fee 1,000, dearest 1,500), flagged `velocity` when HELD.
    Returns {i: transaction id}.
    """
    rows = []
    for i in range(start, start + count):
        amount = Decimal(10_000 + i).quantize(Decimal("0.01"))
        earns = i % 10 != 0
        cashback = (amount / 100).quantize(Decimal("0.01")) if earns else Decimal("0.00")
        reward = Decimal("5000.00") if earns and i % 5 == 4 else Decimal("0.00")
        rows.append(
            Transaction(
                kezbek_ref=kezbek_ref_of(i),
                partner=partners[i % len(partners)],
                partner_ref=f"INV/{i}",
                msisdn=msisdn_of(i),
                quantity=1 + i % 3,
                amount=amount,
                wallet=wallets[i % len(wallets)],
                cashback=cashback,
                reward=reward,
                total=cashback + reward,
                tier=tier,
                tier_count=i % 5,
                created_at=since + i * step,
            )
        )
    created = Transaction.objects.bulk_create(rows, batch_size=2000)
    ids = {start + n: txn.pk for n, txn in enumerate(created)}
    payouts = []
    for i, txn in zip(range(start, start + count), created):
        if txn.total == 0:
            continue
        status = STATUS_CYCLE[i % 5]
        provider = providers[i % len(providers)] if providers else None
        payouts.append(
            Payout(
                transaction=txn,
                wallet=txn.wallet,
                msisdn=txn.msisdn,
                amount=txn.total,
                status=status,
                flags=["velocity"] if status == Payout.Status.HELD else [],
                provider=provider,
                reference=f"{txn.kezbek_ref}-{provider.code}" if provider else "",
                fee=Decimal("1000.00") if provider else None,
                dearest_fee=Decimal("1500.00") if provider else None,
                created_at=txn.created_at,
            )
        )
    Payout.objects.bulk_create(payouts, batch_size=2000)
    return ids
