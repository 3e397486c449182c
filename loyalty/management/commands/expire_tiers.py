"""`expire_tiers [--as-of ISO8601] [--json]`: the daily tier expiry job (DOMAIN.md §2 step 2)."""

import json
import time
from datetime import datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from loyalty.services import tier_expire_all

PROGRESS_AFTER_SECONDS = 2.0


class Command(BaseCommand):
    help = (
        "Applies tier expiry to every loyalty state expired at --as-of (default now), in set-based "
        "batches, and prints how many states moved. Progress goes to stderr on long runs."
    )

    def add_arguments(self, parser):
        parser.add_argument("--as-of", dest="as_of", help="ISO 8601 datetime with an offset, e.g. 2026-01-31T00:00:00+07:00")
        parser.add_argument("--batch-size", dest="batch_size", type=int, default=1000, help="states per batch (default 1000)")
        parser.add_argument("--json", action="store_true", dest="as_json", help='print {"moved": n, "as_of": …} on stdout')

    def handle(self, *args, as_of, batch_size, as_json, **options):
        now = timezone.now()
        moment = _parse_as_of(as_of) if as_of is not None else now
        if moment > now:
            # Expiring ahead of time would demote customers whose tier is still valid.
            raise CommandError(f"--as-of {as_of} is in the future; it must be now or earlier")
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        started = time.monotonic()

        def progress(moved: int) -> None:
            # Quiet for the usual short run; a long one says it is alive.
            if moved >= batch_size or time.monotonic() - started >= PROGRESS_AFTER_SECONDS:
                self.stderr.write(f"expire_tiers: {moved} state(s) moved so far")

        moved = tier_expire_all(as_of=moment, batch_size=batch_size, progress=progress)
        stamp = timezone.localtime(moment).isoformat()
        if as_json:
            self.stdout.write(json.dumps({"moved": moved, "as_of": stamp}))
        else:
            self.stdout.write(f"{moved} loyalty state(s) moved down by expiry as of {stamp}")


def _parse_as_of(raw: str) -> datetime:
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise CommandError(f"--as-of {raw!r} is not an ISO 8601 datetime (e.g. 2026-01-31T00:00:00+07:00)") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise CommandError(f"--as-of {raw!r} has no UTC offset (add e.g. +07:00 or Z)")
    return moment
