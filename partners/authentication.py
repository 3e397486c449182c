"""Signed partner requests (API.md "Authentication") as a DRF authentication class."""

import logging
import time

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication

from cezbek.api.exception_handlers import AUTHENTICATE_HEADER
from cezbek.errors import AuthenticationFailed, ReplayedRequest, SignatureExpired
from partners import services, signing
from partners.guards import request_admit
from partners.selectors import credential_for_key

logger = logging.getLogger("cezbek.auth")


def signed_path(meta) -> str | None:
    """The path and query string exactly as the client sent them (API.md: the string to sign), as
    the WSGI server kept them: gunicorn's RAW_URI, or REQUEST_URI (uWSGI, mod_wsgi). Django's own
    path is decoded and encoded again, so `%2B` would come back as `+` and the signature fail.
    None when the server keeps none, or kept an absolute URI (the caller then rebuilds the path)."""
    raw = meta.get("RAW_URI") or meta.get("REQUEST_URI")
    return raw if raw and raw.startswith("/") else None


class SignedRequestAuthentication(BaseAuthentication):
    """Authenticates X-Cezbek-Key / -Timestamp / -Signature; request.user becomes the Partner."""

    def authenticate(self, request):
        # The Django request DRF wraps: DRF's Request hands each attribute it lacks (META, method,
        # body…) on through a failed lookup and a __getattr__.
        django_request = request._request
        meta = django_request.META
        key_id = meta.get("HTTP_X_CEZBEK_KEY", "")
        timestamp = meta.get("HTTP_X_CEZBEK_TIMESTAMP", "")
        signature = meta.get("HTTP_X_CEZBEK_SIGNATURE", "")
        if not (key_id and timestamp and signature):
            raise AuthenticationFailed(
                "Missing signing headers: X-Cezbek-Key, X-Cezbek-Timestamp and X-Cezbek-Signature are required."
            )
        credential = credential_for_key(key_id=key_id)
        if credential is None:
            logger.warning("refused: unknown or revoked key %s…", key_id[:8])
            raise AuthenticationFailed("Unknown or revoked key.")
        partner = credential.partner
        if not partner.active:
            logger.warning("refused: inactive partner %s", partner.code)
            raise AuthenticationFailed("Partner is inactive.")
        if not (timestamp.isascii() and timestamp.isdigit()):  # isdigit alone takes "²" and other digits int() refuses
            raise AuthenticationFailed("X-Cezbek-Timestamp must be Unix time in whole seconds.")
        # Over 12 digits is tens of thousands of years away (and, long enough, more than a float holds).
        skew = abs(time.time() - int(timestamp)) if len(timestamp) <= 12 else None
        if skew is None or skew > settings.CEZBEK_SIGNATURE_MAX_SKEW_SECONDS:
            logger.warning("refused: partner %s timestamp %s s off", partner.code, "far" if skew is None else int(skew))
            raise SignatureExpired(
                f"X-Cezbek-Timestamp is more than {settings.CEZBEK_SIGNATURE_MAX_SKEW_SECONDS} s away from server time."
            )
        expected = signing.sign(
            secret=services.credential_secret_cached(credential=credential),
            method=django_request.method,
            path=signed_path(meta) or django_request.get_full_path(),
            timestamp=timestamp,
            body=django_request.body,
        )
        if not signing.signature_matches(expected=expected, given=signature):
            logger.warning("refused: bad signature from partner %s key %s…", partner.code, credential.key_prefix)
            raise AuthenticationFailed("Bad signature.")
        # A signature stays replayable for as long as its timestamp is accepted: twice the skew window.
        admission = request_admit(
            signature=signature,
            partner_id=partner.pk,
            limit_per_minute=partner.rate_limit_per_minute or settings.CEZBEK_RATE_LIMIT_PER_MINUTE,
            replay_ttl=2 * settings.CEZBEK_SIGNATURE_MAX_SKEW_SECONDS + 1,
        )
        if not admission.fresh:
            logger.warning("refused: replayed request from partner %s", partner.code)
            raise ReplayedRequest("This signature was already used.")
        # The rate limit is enforced by PartnerRateThrottle, after authentication, as DRF orders it.
        django_request.cezbek_admission = admission
        return partner, credential

    def authenticate_header(self, request):
        return AUTHENTICATE_HEADER


class SignedRequestScheme(OpenApiAuthenticationExtension):
    target_class = "partners.authentication.SignedRequestAuthentication"
    name = ["CezbekKey", "CezbekTimestamp", "CezbekSignature"]

    def get_security_definition(self, auto_schema):
        return [
            {
                "type": "apiKey",
                "in": "header",
                "name": signing.KEY_HEADER,
                "description": "Your key id (public). Issued by Kezbek operations; rotatable.",
            },
            {
                "type": "apiKey",
                "in": "header",
                "name": signing.TIMESTAMP_HEADER,
                "description": "Unix time in seconds; refused (401 signature_expired) when more than 300 s away.",
            },
            {
                "type": "apiKey",
                "in": "header",
                "name": signing.SIGNATURE_HEADER,
                "description": (
                    "Lowercase hex HMAC-SHA256, keyed with your secret, of the string to sign: these lines "
                    "joined by \\n — the HTTP method in upper case; the path with its query string exactly "
                    "as sent; the timestamp; the lowercase hex SHA-256 of the raw body (of the empty string "
                    "when there is no body). Each signature is accepted once (401 replayed_request)."
                ),
            },
        ]
