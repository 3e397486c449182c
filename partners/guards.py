"""Replay guard and per-partner rate limit, in Redis when configured, in-process otherwise.

Both ride on Django's cache: `add` is atomic in Redis (SET NX) and in the local-memory cache.
"""

import hashlib
import time

from django.core.cache import cache


def replay_guard_claim(*, signature: str, ttl_seconds: int) -> bool:
    """True the first time a signature is seen within ttl_seconds, False for a replay."""
    # Stored as a digest: the signature itself never leaves the request.
    digest = hashlib.sha256(signature.encode()).hexdigest()[:40]
    return cache.add(f"replay:{digest}", 1, timeout=ttl_seconds)


def rate_limit_hit(*, partner_id: int, limit_per_minute: int) -> tuple[bool, int]:
    """Counts one request in the current minute; returns (allowed, seconds until the window resets)."""
    now = time.time()
    window = int(now // 60)
    key = f"ratelimit:{partner_id}:{window}"
    if cache.add(key, 1, timeout=61):
        count = 1
    else:
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=61)
            count = 1
    retry_after = max(1, int((window + 1) * 60 - now + 0.999))
    return count <= limit_per_minute, retry_after
