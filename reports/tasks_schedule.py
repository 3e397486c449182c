"""The daily settlement fetch (cezbek/schedule.py "settlement-fetch"): each active provider's settlement
file, fetched from the provider and imported through `services.settlement_import` (DOMAIN.md §7).

- Days are UTC days, as the providers' files are (docs/providers.md): at 08:00 Asia/Jakarta (01:00
  UTC) yesterday's UTC day is over. Each run looks at the last `days` UTC days (yesterday included)
  and fetches, oldest first, every (provider, day) that no settlement run of that provider covers yet,
  so a day missed (provider down, beat stopped) is caught up by the next run, and a day Finance
  imported by hand is left alone.
- A file imported before (same bytes, same day) counts as already imported. A file that fails (fetch
  error, bad file) is reported and the others go on; the job then fails, so its period may be run
  again (cezbek/jobs.py), and the next days' runs try that day again anyway.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta

from cezbek.errors import Conflict, ValidationFailed
from reports import services
from reports.models import SettlementRun
from wallets.models import Provider
from wallets.providers import PROVIDER_CODES, ProviderError, get_client

logger = logging.getLogger("cezbek.reports")


class SettlementFetchIncomplete(Exception):
    """Some files could not be fetched or imported; `summary` says which and why."""

    def __init__(self, summary: dict):
        super().__init__(f"settlement files not imported: {summary['failed']}")
        self.summary = summary


def settlement_days(*, today: date, days: int) -> list[date]:
    """The UTC days a run on `today` (UTC) looks at, oldest first: the `days` days before today."""
    if days < 1:
        raise ValidationFailed.for_field("days", "Look at least at yesterday (days ≥ 1).")
    return [today - timedelta(days=n) for n in range(days, 0, -1)]


def settlements_fetch_due(*, today: date | None = None, days: int = 3) -> dict:
    """Fetches and imports every active provider's settlement file of the last `days` UTC days not yet imported.

    Returns `{"imported": [{"provider", "day", "run", "lines"}], "already": n, "failed": [{"provider", "day", "error"}]}`;
    raises SettlementFetchIncomplete (with that summary) when a file failed.
    """
    today = today or datetime.now(UTC).date()
    summary: dict = {"imported": [], "already": 0, "failed": []}
    providers = list(Provider.objects.filter(active=True, code__in=PROVIDER_CODES).order_by("code"))
    for provider in providers:
        for day in settlement_days(today=today, days=days):
            start = datetime.combine(day, time.min, tzinfo=UTC)
            covered = SettlementRun.objects.filter(provider=provider, period_start__lte=start, period_end__gte=start + timedelta(days=1))
            if covered.exists():
                summary["already"] += 1
                continue
            _fetch_one(provider=provider, day=day, summary=summary)
    if summary["failed"]:
        raise SettlementFetchIncomplete(summary)
    return summary


def _fetch_one(*, provider: Provider, day: date, summary: dict) -> None:
    code = provider.code
    try:
        content = get_client(code).fetch_settlement(date=day).encode("utf-8")
        run = services.settlement_import(
            provider_code=code, content=content, file_name=f"{code.lower()}-{day.isoformat()}.csv", settlement_date=day
        )
    except Conflict:
        summary["already"] += 1  # the same bytes for this day were imported meanwhile
        return
    except (ProviderError, ValidationFailed) as error:
        message = getattr(error, "message", None) or str(error)
        logger.warning("settlement fetch %s %s: %s", code, day, message)
        summary["failed"].append({"provider": code, "day": day.isoformat(), "error": message[:300]})
        return
    summary["imported"].append({"provider": code, "day": day.isoformat(), "run": run.pk, "lines": run.line_count})
