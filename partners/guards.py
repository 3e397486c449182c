"""Replay guard and per-partner rate limit, in Redis when configured, in-process otherwise.

With Redis, both cost one round trip per request (SET NX for the signature, INCR for the
minute's counter, in one pipeline); without it they ride on Django's local-memory cache, whose
`add` is atomic too. Keys carry the cache's prefix either way.
"""

import hashlib
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache


@dataclass(frozen=True)
class Admission:
    fresh: bool  # False: this signature was already used (a replay)
    allowed: bool  # False: over the partner's rate limit this minute
    retry_after: int  # seconds until this minute's window ends


def request_admit(*, signature: str, partner_id: int, limit_per_minute: int, replay_ttl: int) -> Admission:
    """Claims the signature and counts the request against the partner's current minute."""
    # Stored as a digest: the signature itself never leaves the request.
    replay_key = "replay:" + hashlib.sha256(signature.encode()).hexdigest()[:40]
    now = time.time()
    window = int(now // 60)
    rate_key = f"ratelimit:{partner_id}:{window}"
    retry_after = max(1, int((window + 1) * 60 - now + 0.999))
    if settings.REDIS_URL:
        from django_redis import get_redis_connection

        pipe = get_redis_connection("default").pipeline(transaction=False)
        pipe.set(cache.make_key(replay_key), 1, nx=True, ex=replay_ttl)
        pipe.incr(cache.make_key(rate_key))
        pipe.expire(cache.make_key(rate_key), 61, nx=True)
        fresh, count, _ = pipe.execute()
    else:
        fresh = cache.add(replay_key, 1, timeout=replay_ttl)
        count = 1 if cache.add(rate_key, 1, timeout=61) else _incr(rate_key)
    return Admission(fresh=bool(fresh), allowed=count <= limit_per_minute, retry_after=retry_after)


def _incr(key: str) -> int:
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=61)
        return 1
