from cezbek.snapshots import cached
from partners.models import PartnerCredential


def credential_for_key(*, key_id: str) -> PartnerCredential | None:
    """The live (not revoked) credential with this key id, with its partner, or None.

    Found credentials are kept in the process's configuration snapshot (a revocation or a
    partner change drops it); unknown keys are looked up every time, so nobody can fill it.
    """
    return cached(f"credential:{key_id}", lambda: _live_credential(key_id))


def _live_credential(key_id: str) -> PartnerCredential | None:
    return PartnerCredential.objects.select_related("partner").filter(key_id=key_id, revoked_at__isnull=True).first()
