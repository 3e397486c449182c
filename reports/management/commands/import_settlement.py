"""`import_settlement PROVIDER FILE [--date YYYY-MM-DD] [--json]` (OPERATIONS.md "Other commands")."""

import json
from datetime import date
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from cezbek.errors import CezbekError
from reports.selectors import run_counts
from reports.services import settlement_import


class Command(BaseCommand):
    help = (
        "Imports a provider settlement CSV (PROVIDERS.md columns), reconciles every line with our payouts "
        "and prints the counts per outcome. A bad file, an unknown provider or a file imported before "
        "changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("provider", help="the provider's code, e.g. MTRANS")
        parser.add_argument("file", help="the settlement CSV")
        parser.add_argument(
            "--date",
            dest="settlement_date",
            help="the day (UTC) the file settles, YYYY-MM-DD; default: the date in the file name, else the lines' days",
        )
        parser.add_argument("--json", action="store_true", dest="as_json", help='print {"run": ID, "counts": {…}} on stdout')

    def handle(self, *args, provider, file, settlement_date, as_json, **options):
        day = None
        if settlement_date is not None:
            try:
                day = date.fromisoformat(settlement_date)
            except ValueError:
                raise CommandError(f"--date {settlement_date!r} is not a date (YYYY-MM-DD)") from None
        path = Path(file)
        try:
            content = path.read_bytes()
        except OSError as error:
            raise CommandError(f"cannot read {file}: {error.strerror or error}") from None
        try:
            run = settlement_import(provider_code=provider, content=content, file_name=path.name, settlement_date=day)
        except CezbekError as error:
            raise CommandError(error.message) from None
        counts = run_counts(run=run)
        if as_json:
            self.stdout.write(json.dumps({"run": run.pk, "counts": counts}))
            return
        self.stdout.write(
            f"Settlement run {run.pk}: {run.provider.code} {run.file_name}, {run.line_count} line(s), "
            f"period {run.period_start:%Y-%m-%d %H:%M} to {run.period_end:%Y-%m-%d %H:%M} UTC ({run.period_source})."
        )
        for outcome, n in counts.items():
            self.stdout.write(f"  {outcome:<22} {n}")
        if run.payouts_settled:
            self.stdout.write(f"{run.payouts_settled} payout(s) found paid moved to SUCCEEDED with this run as evidence.")
