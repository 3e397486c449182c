"""Thin Celery tasks for reports: safe to run twice (one invoice per partner and month, emailed once)."""

from datetime import date

from celery import shared_task

from reports import selectors, services


@shared_task(name="reports.invoices_monthly")
def invoices_monthly(month: str | None = None) -> dict:
    """Every partner's invoice for `month` (YYYY-MM), by default the previous month in Asia/Jakarta (beat, the 1st)."""
    first = date.fromisoformat(f"{month}-01") if month else selectors.previous_month(tz=services.INVOICE_TZ)
    results = services.invoices_generate_month(month=first)
    return {
        "month": f"{first:%Y-%m}",
        "invoices": len(results),
        "changed": sum(r.changed for r in results),
        "emailed": sum(r.emailed for r in results),
    }


@shared_task(name="reports.settlements_fetch")
def settlements_fetch(days: int = 3) -> dict:
    """The daily settlement fetch (beat): every active provider's files of the last `days` UTC days not yet imported."""
    from reports.tasks_schedule import settlements_fetch_due

    return settlements_fetch_due(days=days)
