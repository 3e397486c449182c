"""Secrets at rest: Fernet (AES-128-CBC + HMAC) with key rotation through MultiFernet."""

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


def _as_fernet_key(material: str) -> bytes:
    try:
        key = material.encode()
        Fernet(key)
        return key
    except (ValueError, TypeError):
        # Any other string is stretched into a key, so operators may set a passphrase.
        return base64.urlsafe_b64encode(hashlib.sha256(material.encode()).digest())


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(_as_fernet_key(k)) for k in keys])


def encrypt(plaintext: str) -> str:
    return _fernet(tuple(settings.CEZBEK_ENCRYPTION_KEYS)).encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    """Decrypts with any configured key; raises ValueError (no detail) when none fits."""
    try:
        return _fernet(tuple(settings.CEZBEK_ENCRYPTION_KEYS)).decrypt(token.encode()).decode()
    except InvalidToken:
        raise ValueError("secret cannot be decrypted with the configured keys") from None
