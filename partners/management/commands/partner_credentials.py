"""`partner_credentials CODE [--rotate] [--revoke KEY_ID] [--json]` (OPERATIONS.md "Other commands")."""

import json

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from cezbek.errors import NotFound
from cezbek.snapshots import NotShared
from partners.models import Partner, PartnerCredential
from partners.services import credential_issue, credential_revoke


class Command(BaseCommand):
    help = (
        "Issues a key id and secret for the partner and prints them once (the secret cannot be shown "
        "again). --rotate adds a new pair and keeps the earlier ones valid until --revoke KEY_ID."
    )

    def add_arguments(self, parser):
        parser.add_argument("code", help="the partner's code, e.g. LAJADA")
        parser.add_argument("--rotate", action="store_true", help="add a new pair; earlier pairs stay valid until revoked")
        parser.add_argument("--revoke", metavar="KEY_ID", help="revoke this key id at once")
        parser.add_argument("--json", action="store_true", dest="as_json", help="print the result as JSON on stdout")

    def handle(self, *args, code, rotate, revoke, as_json, **options):
        if rotate and revoke is not None:
            raise CommandError("--rotate and --revoke are separate steps: rotate first, revoke the old key once the partner uses the new one")
        try:
            if revoke is not None:
                self._revoke(code, revoke, as_json=as_json)
            else:
                self._issue(code, rotate=rotate, as_json=as_json)
        except NotShared as error:
            raise CommandError(str(error)) from None

    def _issue(self, code: str, *, rotate: bool, as_json: bool) -> None:
        with transaction.atomic():
            # The partner row lock keeps two issues for one partner from interleaving their reports.
            partner = Partner.objects.select_for_update().filter(code=code).first()
            if partner is None:
                raise CommandError(f"no partner with code {code!r}")
            earlier = list(
                PartnerCredential.objects.filter(partner=partner, revoked_at__isnull=True).order_by("created_at", "id")
            )
            issued = credential_issue(partner=partner)
        if as_json:
            self.stdout.write(json.dumps({"partner": issued.partner_code, "key_id": issued.key_id, "secret": issued.secret}))
        else:
            self.stdout.write(
                f"{'Rotated' if rotate else 'Issued'} a key for partner {issued.partner_code}.\n"
                f"  key id  {issued.key_id}\n"
                f"  secret  {issued.secret}\n"
                "The secret is shown this once and cannot be retrieved later: store it now and hand it "
                "to the partner over a secure channel."
            )
        if earlier:
            # On stderr, so --json output stays one JSON document.
            prefixes = ", ".join(f"{c.key_prefix}…" for c in earlier)
            self.stderr.write(
                f"{partner.code} has {len(earlier)} earlier live key(s) ({prefixes}); they stay valid until "
                f"`partner_credentials {partner.code} --revoke KEY_ID`."
            )
        if not partner.active:
            self.stderr.write(f"note: partner {partner.code} is inactive; its requests are refused until it is activated.")

    def _revoke(self, code: str, key_id: str, *, as_json: bool) -> None:
        partner = Partner.objects.filter(code=code).first()
        if partner is None:
            raise CommandError(f"no partner with code {code!r}")
        try:
            credential = credential_revoke(partner=partner, key_id=key_id)
        except NotFound as error:
            raise CommandError(error.message) from None
        revoked_at = timezone.localtime(credential.revoked_at).isoformat()
        if as_json:
            self.stdout.write(json.dumps({"partner": partner.code, "key_id": credential.key_id, "revoked_at": revoked_at}))
        else:
            self.stdout.write(f"Revoked key {credential.key_prefix}… of partner {partner.code} (at {revoked_at}).")
