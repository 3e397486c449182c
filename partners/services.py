import logging
import secrets
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from cezbek import crypto
from cezbek.errors import NotFound
from cezbek.snapshots import cached
from partners.models import Partner, PartnerCredential

logger = logging.getLogger("cezbek.partners")


@dataclass(frozen=True)
class IssuedCredential:
    """A freshly issued pair: the only moment the secret exists in clear outside the partner."""

    partner_code: str
    key_id: str
    secret: str


def credential_issue(*, partner: Partner) -> IssuedCredential:
    """Issues a new key id and secret; earlier live pairs stay valid until revoked (rotation)."""
    key_id = "kzk_" + secrets.token_hex(12)
    secret = "kzs_" + secrets.token_urlsafe(32)
    credential = PartnerCredential.objects.create(
        partner=partner, key_id=key_id, secret_encrypted=crypto.encrypt(secret)
    )
    logger.info("credential issued for partner %s: key %s…", partner.code, credential.key_prefix)
    return IssuedCredential(partner_code=partner.code, key_id=key_id, secret=secret)


def credential_revoke(*, partner: Partner, key_id: str) -> PartnerCredential:
    """Revokes one of the partner's keys at once; revoking twice is harmless."""
    with transaction.atomic():
        credential = (
            PartnerCredential.objects.select_for_update().filter(partner=partner, key_id=key_id).first()
        )
        if credential is None:
            raise NotFound(f"Partner {partner.code} has no key starting {key_id[:8]}…")
        if credential.revoked_at is None:
            credential.revoked_at = timezone.now()
            credential.save(update_fields=["revoked_at"])
            logger.info("credential revoked for partner %s: key %s…", partner.code, credential.key_prefix)
    return credential


def credential_secret(*, credential: PartnerCredential) -> str:
    """The clear secret of a stored credential (for verifying and for signing webhooks)."""
    return crypto.decrypt(credential.secret_encrypted)


def credential_secret_cached(*, credential: PartnerCredential) -> str:
    """The clear secret, decrypted once per process and kept in the configuration snapshot with
    the credential itself (`partners.selectors.credential_for_key`): any credential or partner
    change, a revocation included, drops both. Every signed request needs it."""
    return cached(f"credential-secret:{credential.pk}:{credential.secret_encrypted}", lambda: credential_secret(credential=credential))
