"""Reads for reconciliation and invoices (DOMAIN.md §7)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.db.models import Count, DecimalField, Exists, OuterRef, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from cashback.models import Transaction
from reports.models import SettlementLine, SettlementRun
from wallets.models import Payout, PayoutEvent

Outcome = SettlementLine.Outcome
ZERO = Decimal("0.00")
MONEY = DecimalField(max_digits=16, decimal_places=2)


# --- reconciliation ------------------------------------------------------------------------------


def run_counts(*, run: SettlementRun) -> dict[str, int]:
    """Lines of the run per outcome, every outcome present (OPERATIONS.md `import_settlement --json`)."""
    found = dict(run.lines.values_list("outcome").annotate(n=Count("id")).values_list("outcome", "n"))
    return {outcome.value: found.get(outcome.value, 0) for outcome in Outcome}


def runs_with_counts() -> QuerySet[SettlementRun]:
    """Settlement runs, each annotated `n_<OUTCOME>` with its lines per outcome (for the admin's list)."""
    return SettlementRun.objects.annotate(
        **{f"n_{outcome.value}": Count("lines", filter=Q(lines__outcome=outcome.value)) for outcome in Outcome}
    )


def run_lines(*, run: SettlementRun, outcome: str | None = None) -> QuerySet[SettlementLine]:
    """The run's lines in file order (missing payouts last), optionally of one outcome."""
    lines = run.lines.select_related("payout__transaction").order_by("line_number", "id")
    if outcome:
        lines = lines.filter(outcome=outcome)
    return lines


MISMATCH_COLUMNS = [
    "run",
    "provider",
    "line",
    "outcome",
    "provider_ref",
    "client_ref",
    "wallet",
    "msisdn",
    "amount",
    "fee",
    "status",
    "settled_at",
    "payout",
    "kezbek_ref",
    "payout_status",
    "payout_amount",
    "payout_settled",
    "note",
]


def run_mismatches_csv(*, run: SettlementRun) -> str:
    """Every line of the run that is not MATCHED, as CSV for finance (one header row, then a row per line)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(MISMATCH_COLUMNS)
    code = run.provider.code
    for line in run_lines(run=run).exclude(outcome=Outcome.MATCHED):
        writer.writerow(
            [
                run.pk,
                code,
                line.line_number or "",
                line.outcome,
                line.provider_ref,
                line.client_ref,
                line.wallet,
                line.msisdn,
                _money(line.amount),
                _money(line.fee),
                line.status,
                line.settled_at.isoformat() if line.settled_at else "",
                line.payout_id or "",
                line.payout.transaction.kezbek_ref if line.payout_id else "",
                line.payout_status,
                _money(line.payout_amount),
                "yes" if line.payout_settled else "no",
                line.note,
            ]
        )
    return out.getvalue()


def _money(value: Decimal | None) -> str:
    return "" if value is None else f"{value:.2f}"


# --- invoices ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InvoiceFigures:
    transactions: int
    purchase_amount: Decimal
    cashback: Decimal
    reward: Decimal
    payouts_succeeded: int
    payouts_succeeded_amount: Decimal
    provider_fees: Decimal


def _succeeded_within(start: datetime, end: datetime):
    """Payouts whose move to SUCCEEDED happened in [start, end): each success counts in exactly one month."""
    return Exists(
        PayoutEvent.objects.filter(
            payout=OuterRef("pk"), to_status=Payout.Status.SUCCEEDED, created_at__gte=start, created_at__lt=end
        )
    )


def invoice_figures(*, partner, start: datetime, end: datetime) -> InvoiceFigures:
    """A partner's figures for [start, end): purchases accepted in it, payouts that succeeded in it."""
    money = lambda field: Coalesce(Sum(field), Value(ZERO), output_field=MONEY)  # noqa: E731
    purchases = Transaction.objects.filter(partner=partner, created_at__gte=start, created_at__lt=end).aggregate(
        n=Count("id"), amount=money("amount"), cashback=money("cashback"), reward=money("reward")
    )
    payouts = (
        Payout.objects.filter(transaction__partner=partner, status=Payout.Status.SUCCEEDED)
        .filter(_succeeded_within(start, end))
        .aggregate(n=Count("id"), amount=money("amount"), fees=money("fee"))
    )
    return InvoiceFigures(
        transactions=purchases["n"],
        purchase_amount=purchases["amount"],
        cashback=purchases["cashback"],
        reward=purchases["reward"],
        payouts_succeeded=payouts["n"],
        payouts_succeeded_amount=payouts["amount"],
        provider_fees=payouts["fees"],
    )


def partners_active_within(*, start: datetime, end: datetime) -> list:
    """Partners with a purchase accepted or a payout succeeded in [start, end), by code."""
    from partners.models import Partner

    bought = Transaction.objects.filter(partner=OuterRef("pk"), created_at__gte=start, created_at__lt=end)
    paid = Payout.objects.filter(transaction__partner=OuterRef("pk"), status=Payout.Status.SUCCEEDED).filter(
        _succeeded_within(start, end)
    )
    return list(Partner.objects.filter(Exists(bought) | Exists(paid)).order_by("code"))


def previous_month(*, now: datetime | None = None, tz=None) -> date:
    """The first day of the calendar month before `now`'s, in `tz` (default the current time zone)."""
    local = timezone.localtime(now or timezone.now(), tz)
    first = local.date().replace(day=1)
    return (first.replace(year=first.year - 1, month=12) if first.month == 1 else first.replace(month=first.month - 1))
