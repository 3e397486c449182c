"""Request signing (API.md "Authentication"): partners and our webhooks use the same code.

String to sign, lines joined by "\\n": METHOD, path with query string as sent, timestamp,
hex SHA-256 of the raw body. Signature: lowercase hex HMAC-SHA256 keyed with the secret.
"""

import hashlib
import hmac

KEY_HEADER = "X-Cezbek-Key"
TIMESTAMP_HEADER = "X-Cezbek-Timestamp"
SIGNATURE_HEADER = "X-Cezbek-Signature"


def string_to_sign(*, method: str, path: str, timestamp: str, body: bytes) -> str:
    return "\n".join([method.upper(), path, str(timestamp), hashlib.sha256(body).hexdigest()])


def sign(*, secret: str, method: str, path: str, timestamp: str, body: bytes) -> str:
    message = string_to_sign(method=method, path=path, timestamp=timestamp, body=body)
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def signature_matches(*, expected: str, given: str) -> bool:
    """Constant-time comparison."""
    return hmac.compare_digest(expected.encode(), given.encode())


def signed_headers(*, key_id: str, secret: str, method: str, path: str, body: bytes, timestamp: int) -> dict:
    """The three headers for a request: what a partner's client (and our webhook sender) sends."""
    ts = str(int(timestamp))
    return {
        KEY_HEADER: key_id,
        TIMESTAMP_HEADER: ts,
        SIGNATURE_HEADER: sign(secret=secret, method=method, path=path, timestamp=ts, body=body),
    }
