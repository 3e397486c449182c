from django.conf import settings
from rest_framework.throttling import BaseThrottle

from partners.guards import rate_limit_hit


class PartnerRateThrottle(BaseThrottle):
    """Per-partner requests a minute (the partner's own limit, else CEZBEK_RATE_LIMIT_PER_MINUTE)."""

    def allow_request(self, request, view):
        partner = request.user
        if partner is None or not getattr(partner, "pk", None):
            return True
        limit = partner.rate_limit_per_minute or settings.CEZBEK_RATE_LIMIT_PER_MINUTE
        allowed, self._wait = rate_limit_hit(partner_id=partner.pk, limit_per_minute=limit)
        return allowed

    def wait(self):
        return self._wait
