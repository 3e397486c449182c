"""The admin dashboard page (`/admin/dashboard/`): figures from reports.dashboard, charts from
reports.dashboard_charts. Staff only: cezbek/urls.py wraps the view in `admin.site.admin_view`."""

from __future__ import annotations

from django.contrib import admin, messages
from django.template.response import TemplateResponse

from reports.dashboard import DEFAULT_PERIOD, PERIODS, Dashboard, dashboard_figures
from reports.dashboard_charts import Series, bar_chart, format_count, format_money, line_chart

BLUE, GREEN, RED, AMBER, ORANGE, GREY = "#2f6db5", "#2b8a3e", "#c92a2a", "#e8a33d", "#c2410c", "#868e96"


def _period(raw: str | None) -> tuple[int, str | None]:
    """The `days` query parameter: one of PERIODS; anything else falls back to the default, with a reason."""
    if raw is None or raw == "":
        return DEFAULT_PERIOD, None
    if raw.isdigit() and int(raw) in PERIODS:
        return int(raw), None
    choices = ", ".join(str(p) for p in PERIODS)
    return DEFAULT_PERIOD, f"Unknown period {raw[:20]!r}: choose {choices} days. Showing the last {DEFAULT_PERIOD} days."


def dashboard_charts(dashboard: Dashboard) -> dict[str, str]:
    """The four charts, as inline SVG."""
    days = dashboard.days
    labels = [f"{d.day.day} {d.day:%b}" for d in days]
    span = f"{dashboard.first_day:%d %b %Y} to {dashboard.last_day:%d %b %Y}, by day of purchase (Asia/Jakarta)"
    totals = dashboard.totals
    providers = dashboard.providers
    provider_labels = [p.code or "not routed" for p in providers]
    return {
        "volume": bar_chart(
            chart_id="chart-volume",
            title="Daily purchases and payouts",
            description=(
                f"Purchases and payouts per day, {span}: {format_count(totals.purchases)} purchases, "
                f"{format_count(totals.succeeded)} payouts succeeded, {format_count(totals.unsuccessful)} failed "
                "or in manual review. The figures are in the daily table below."
            ),
            labels=labels,
            series=[
                Series("Purchases", [d.purchases for d in days], BLUE),
                Series("Payouts succeeded", [d.succeeded for d in days], GREEN),
                Series("Failed or manual review", [d.unsuccessful for d in days], RED),
            ],
        ),
        "paid": bar_chart(
            chart_id="chart-paid",
            title="Daily cashback and rewards paid (IDR)",
            description=(
                f"Cashback and tier rewards of succeeded payouts per day, {span}: cashback "
                f"{format_money(totals.cashback_paid)}, rewards {format_money(totals.reward_paid)}."
            ),
            labels=labels,
            series=[
                Series("Cashback", [d.cashback_paid for d in days], BLUE),
                Series("Rewards", [d.reward_paid for d in days], AMBER),
            ],
            money=True,
            stacked=True,
        ),
        "success": line_chart(
            chart_id="chart-success",
            title="Payout success rate per day",
            description=(
                f"Succeeded payouts as a share of finished ones (succeeded, failed, manual review) per day, {span}. "
                "Days without a finished payout have no point."
            ),
            labels=labels,
            series=[
                Series(
                    "Success rate",
                    [d.success_rate for d in days],
                    GREEN,
                    notes=[f"{d.succeeded:,} of {d.finished:,} finished payouts" for d in days],
                )
            ],
        ),
        "provider_count": bar_chart(
            chart_id="chart-provider-count",
            title="Payouts by provider",
            description=(
                "Payouts per provider in the period, succeeded and other (in flight, failed, in review). "
                "The figures are in the provider table."
            ),
            labels=provider_labels,
            series=[
                Series("Succeeded", [p.succeeded for p in providers], GREEN),
                Series("Other", [p.payouts - p.succeeded for p in providers], GREY),
            ],
            stacked=True,
            empty_text="No payouts in this period",
        ),
        "provider_fees": bar_chart(
            chart_id="chart-provider-fees",
            title="Fees and saving against the dearest route, by provider (IDR)",
            description=(
                f"Provider fees of succeeded payouts ({format_money(totals.fees)} in all) and what choosing the "
                f"cheapest route saved against the dearest one ({format_money(totals.saving)} in all)."
            ),
            labels=provider_labels,
            series=[
                Series("Fees", [p.fees for p in providers], ORANGE),
                Series("Saving", [p.saving for p in providers], GREEN),
            ],
            money=True,
            empty_text="No succeeded payouts in this period",
        ),
    }


def dashboard_view(request):
    """The dashboard for the last 7, 30 or 90 days (`?days=`), today included."""
    days, problem = _period(request.GET.get("days"))
    if problem:
        messages.warning(request, problem)
    dashboard = dashboard_figures(days=days)
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "subtitle": None,
        "dashboard": dashboard,
        "charts": dashboard_charts(dashboard),
        "periods": PERIODS,
    }
    return TemplateResponse(request, "reports/dashboard.html", context)
