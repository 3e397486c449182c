"""The operations and finance dashboard's figures (selectors): a handful of aggregate queries per page,
whatever the number of purchases and payouts.

Every figure is grouped by the day, in Asia/Jakarta, the purchase was accepted. A payout is created
in the same database transaction as its purchase, so a day's purchases, payouts, money paid, fees
and success rate all describe the same purchases (a cohort); a day's figures can still change while
some of its payouts are in flight or waiting for review. Money paid, provider fees and the saving
against the dearest route count SUCCEEDED payouts only: that is what providers bill and customers got.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from django.db.models import Count, DecimalField, ExpressionWrapper, F, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from cashback.models import Transaction
from wallets.models import Payout

JAKARTA = ZoneInfo("Asia/Jakarta")
PERIODS = (7, 30, 90)
DEFAULT_PERIOD = 30
ZERO = Decimal("0.00")
S = Payout.Status
# Waiting for a person: an operator resolves MANUAL_REVIEW, releases or cancels HELD, and watches
# UNKNOWN (an inquiry resolves it, or the ceiling sends it to MANUAL_REVIEW).
REVIEW_STATUSES = (S.MANUAL_REVIEW, S.UNKNOWN, S.HELD)
REVIEW_QUEUE_LIMIT = 50
# Finished deliveries: the success rate is SUCCEEDED over these. CANCELLED payouts were never sent
# and in-flight ones have no outcome yet, so neither counts.
FINISHED_STATUSES = (S.SUCCEEDED, S.FAILED, S.MANUAL_REVIEW)

_MONEY = DecimalField(max_digits=16, decimal_places=2)
_SUCCEEDED = Q(status=S.SUCCEEDED)
_PRICED = _SUCCEEDED & Q(fee__isnull=False) & Q(dearest_fee__isnull=False)


def success_rate(*, succeeded: int, finished: int) -> Decimal | None:
    """SUCCEEDED as a percentage of finished payouts, to 0.1; None when nothing finished."""
    if not finished:
        return None
    return (Decimal(100) * succeeded / finished).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


@dataclass
class DayFigures:
    day: date
    purchases: int = 0
    purchase_amount: Decimal = ZERO
    cashback_earned: Decimal = ZERO
    reward_earned: Decimal = ZERO
    payouts: int = 0
    succeeded: int = 0
    failed: int = 0
    manual_review: int = 0
    cashback_paid: Decimal = ZERO
    reward_paid: Decimal = ZERO
    paid: Decimal = ZERO
    fees: Decimal = ZERO
    saving: Decimal = ZERO

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed + self.manual_review

    @property
    def unsuccessful(self) -> int:
        """FAILED or waiting for manual review: the payouts that did not come through cleanly."""
        return self.failed + self.manual_review

    @property
    def success_rate(self) -> Decimal | None:
        return success_rate(succeeded=self.succeeded, finished=self.finished)


@dataclass
class ProviderFigures:
    code: str | None  # None: payouts not routed yet (or never routable)
    name: str
    payouts: int
    succeeded: int
    paid: Decimal
    fees: Decimal
    saving: Decimal


@dataclass
class Dashboard:
    days_count: int
    start: datetime  # local midnight of the first day
    days: list[DayFigures]
    providers: list[ProviderFigures]
    queue: list[Payout]  # the oldest REVIEW_QUEUE_LIMIT waiting for review
    queue_counts: dict[str, int]
    totals: DayFigures = field(init=False)

    def __post_init__(self) -> None:
        totals = DayFigures(day=self.days[-1].day if self.days else self.start.date())
        for day in self.days:
            for name in DayFigures.__dataclass_fields__:
                if name != "day":
                    setattr(totals, name, getattr(totals, name) + getattr(day, name))
        self.totals = totals

    @property
    def first_day(self) -> date:
        return self.days[0].day

    @property
    def last_day(self) -> date:
        return self.days[-1].day

    @property
    def queue_total(self) -> int:
        return sum(self.queue_counts.values())


def dashboard_period_start(*, days: int, now: datetime | None = None) -> datetime:
    """Local midnight (Asia/Jakarta) of the first of the last `days` days, today included."""
    today = timezone.localtime(now or timezone.now(), JAKARTA).date()
    return datetime.combine(today - timedelta(days=days - 1), time.min, tzinfo=JAKARTA)


def dashboard_figures(*, days: int, now: datetime | None = None) -> Dashboard:
    """Everything the dashboard shows for the last `days` days (today included), in five queries."""
    if days not in PERIODS:
        raise ValueError(f"days must be one of {PERIODS}, not {days!r}")
    start = dashboard_period_start(days=days, now=now)
    by_day = {start.date() + timedelta(days=n): DayFigures(day=start.date() + timedelta(days=n)) for n in range(days)}
    local_day = TruncDate("created_at", tzinfo=JAKARTA)

    purchases = (
        Transaction.objects.filter(created_at__gte=start)
        .annotate(local_day=local_day)
        .values("local_day")
        .annotate(
            purchases=Count("id"),
            purchase_amount=Sum("amount"),
            cashback_earned=Sum("cashback"),
            reward_earned=Sum("reward"),
        )
        .order_by()
    )
    for row in purchases:
        figures = by_day.get(row["local_day"])
        if figures is not None:  # a clock ahead of ours could put a row past today
            figures.purchases = row["purchases"]
            figures.purchase_amount = row["purchase_amount"] or ZERO
            figures.cashback_earned = row["cashback_earned"] or ZERO
            figures.reward_earned = row["reward_earned"] or ZERO

    payouts = (
        Payout.objects.filter(created_at__gte=start)
        .annotate(local_day=local_day)
        .values("local_day")
        .annotate(
            payouts=Count("id"),
            succeeded=Count("id", filter=_SUCCEEDED),
            failed=Count("id", filter=Q(status=S.FAILED)),
            manual_review=Count("id", filter=Q(status=S.MANUAL_REVIEW)),
            cashback_paid=Sum("transaction__cashback", filter=_SUCCEEDED),
            reward_paid=Sum("transaction__reward", filter=_SUCCEEDED),
            paid=Sum("amount", filter=_SUCCEEDED),
            fees=Sum("fee", filter=_SUCCEEDED),
            saving=Sum(ExpressionWrapper(F("dearest_fee") - F("fee"), output_field=_MONEY), filter=_PRICED),
        )
        .order_by()
    )
    for row in payouts:
        figures = by_day.get(row["local_day"])
        if figures is not None:
            for name in ("payouts", "succeeded", "failed", "manual_review"):
                setattr(figures, name, row[name])
            for name in ("cashback_paid", "reward_paid", "paid", "fees", "saving"):
                setattr(figures, name, _money(row[name]))

    return Dashboard(
        days_count=days,
        start=start,
        days=list(by_day.values()),
        providers=_provider_figures(start=start),
        queue=review_queue(limit=REVIEW_QUEUE_LIMIT),
        queue_counts=review_queue_counts(),
    )


def _money(value) -> Decimal:
    return ZERO if value is None else Decimal(value).quantize(Decimal("0.01"))


def _provider_figures(*, start: datetime) -> list[ProviderFigures]:
    rows = (
        Payout.objects.filter(created_at__gte=start)
        .values("provider__code", "provider__name")
        .annotate(
            payouts=Count("id"),
            succeeded=Count("id", filter=_SUCCEEDED),
            paid=Sum("amount", filter=_SUCCEEDED),
            fees=Sum("fee", filter=_SUCCEEDED),
            saving=Sum(ExpressionWrapper(F("dearest_fee") - F("fee"), output_field=_MONEY), filter=_PRICED),
        )
        .order_by("provider__code")
    )
    figures = [
        ProviderFigures(
            code=row["provider__code"],
            name=row["provider__name"] or "not routed",
            payouts=row["payouts"],
            succeeded=row["succeeded"],
            paid=_money(row["paid"]),
            fees=_money(row["fees"]),
            saving=_money(row["saving"]),
        )
        for row in rows
    ]
    # Routed providers by code, the unrouted payouts last (databases sort NULL differently).
    return sorted(figures, key=lambda p: (p.code is None, p.code or ""))


def review_queue(*, limit: int = REVIEW_QUEUE_LIMIT) -> list[Payout]:
    """Payouts waiting for a person (MANUAL_REVIEW, UNKNOWN, HELD), oldest first, whatever their age."""
    return list(
        Payout.objects.filter(status__in=REVIEW_STATUSES)
        .select_related("transaction__partner", "wallet", "provider")
        .order_by("created_at", "id")[:limit]
    )


def review_queue_counts() -> dict[str, int]:
    """How many payouts wait in each review status, every status present (0 when none)."""
    counts = dict(
        Payout.objects.filter(status__in=REVIEW_STATUSES).values_list("status").annotate(n=Count("id")).order_by()
    )
    return {status: counts.get(status, 0) for status in REVIEW_STATUSES}
