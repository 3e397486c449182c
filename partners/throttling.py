from rest_framework.throttling import BaseThrottle


class PartnerRateThrottle(BaseThrottle):
    """Per-partner requests a minute (the partner's own limit, else CEZBEK_RATE_LIMIT_PER_MINUTE).

    The request was counted when its signature was claimed (partners.guards.request_admit, one
    Redis round trip for both); this only reads the verdict.
    """

    def allow_request(self, request, view):
        admission = getattr(request._request, "cezbek_admission", None)
        if admission is None:  # not a signed partner request
            return True
        self._wait = admission.retry_after
        return admission.allowed

    def wait(self):
        return self._wait
