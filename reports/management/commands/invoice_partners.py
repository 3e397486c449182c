"""`invoice_partners [--month YYYY-MM] [--partner CODE] [--no-email] [--json]`: monthly partner invoices (DOMAIN.md §7)."""

import json
import re
from datetime import date

from django.core.management.base import BaseCommand, CommandError

from cezbek.errors import CezbekError
from partners.models import Partner
from reports.selectors import previous_month
from reports.services import INVOICE_TZ, invoices_generate_month


class Command(BaseCommand):
    help = (
        "Generates each partner's invoice for a calendar month in Asia/Jakarta (default: the previous one), "
        "stores the CSV and emails it to the partner. Every partner with a purchase or a succeeded payout "
        "in the month, or only --partner. Running it again keeps one invoice per partner and month: "
        "replaced if the figures changed, emailed again only then (or if it was never sent)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--month", help="YYYY-MM, a month that has ended (default: the previous month)")
        parser.add_argument("--partner", metavar="CODE", help="only this partner (invoiced even without activity)")
        parser.add_argument("--no-email", action="store_false", dest="email", help="store the invoices, send nothing")
        parser.add_argument("--json", action="store_true", dest="as_json", help="print the invoices as JSON on stdout")

    def handle(self, *args, month, partner, email, as_json, **options):
        if month is None:
            first = previous_month(tz=INVOICE_TZ)
        elif re.fullmatch(r"\d{4}-\d{2}", month) and 1 <= int(month[5:]) <= 12:
            first = date(int(month[:4]), int(month[5:]), 1)
        else:
            raise CommandError(f"--month {month!r} is not a month (YYYY-MM)")
        only = None
        if partner is not None:
            only = Partner.objects.filter(code=partner).first()
            if only is None:
                raise CommandError(f"no partner with code {partner!r}")
        try:
            results = invoices_generate_month(month=first, partner=only, email=email)
        except CezbekError as error:
            raise CommandError(error.message) from None
        rows = [
            {
                "partner": r.invoice.partner.code,
                "invoice": r.invoice.number,
                "transactions": r.invoice.transactions,
                "purchase_amount": f"{r.invoice.purchase_amount:.2f}",
                "cashback": f"{r.invoice.cashback:.2f}",
                "reward": f"{r.invoice.reward:.2f}",
                "payouts_succeeded": r.invoice.payouts_succeeded,
                "payouts_succeeded_amount": f"{r.invoice.payouts_succeeded_amount:.2f}",
                "provider_fees": f"{r.invoice.provider_fees:.2f}",
                "file": r.invoice.file.name,
                "changed": r.changed,
                "emailed": r.emailed,
                "email_error": r.invoice.email_error,
            }
            for r in results
        ]
        for row in rows:
            if row["email_error"]:
                self.stderr.write(f"{row['invoice']}: not emailed: {row['email_error']}")
        if as_json:
            self.stdout.write(json.dumps({"month": f"{first:%Y-%m}", "invoices": rows}))
            return
        if not rows:
            self.stdout.write(f"No partner had a purchase or a succeeded payout in {first:%Y-%m}: no invoice.")
        for row in rows:
            state = "new figures" if row["changed"] else "unchanged"
            sent = "emailed" if row["emailed"] else "not emailed"
            self.stdout.write(
                f"{row['invoice']}: {row['transactions']} purchase(s) IDR {row['purchase_amount']}, cashback {row['cashback']}, "
                f"reward {row['reward']}, {row['payouts_succeeded']} payout(s) IDR {row['payouts_succeeded_amount']}, "
                f"fees {row['provider_fees']} ({state}, {sent})"
            )
