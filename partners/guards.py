"""Replay guard and per-partner rate limit, in Redis when configured, in-process otherwise.

With Redis, both cost one round trip per request (SET NX for the signature, INCR for the
minute's counter, written together); without it they ride on Django's local-memory cache, whose
`add` is atomic too. Keys carry the cache's prefix either way.
"""

import hashlib
import os
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from redis.exceptions import RedisError


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
        replay_key, rate_key = cache.make_key(replay_key), cache.make_key(rate_key)
        fresh, count, _ = redis_round_trip(
            ("SET", replay_key, 1, "NX", "EX", replay_ttl),
            ("INCR", rate_key),
            ("EXPIRE", rate_key, 61, "NX"),
        )
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


_line = threading.local()


def redis_round_trip(*commands: tuple) -> list:
    """Sends the commands to the cache's Redis in one write and returns their replies, in order.

    Each thread keeps one connection of its own, made like the cache pool's (same server, database
    and timeouts) at its first use and kept for the thread's life. A pipeline would check a
    connection out of the pool on every call, with its health checks, hooks and retry wrapper: 4 %
    of a purchase's instructions (docs/benchmarks.md). A connection with unread data, or closed by
    the server since its last use, is replaced before the write, as the pool does at checkout. A
    failure during the round trip drops the connection and propagates, without a retry: the
    commands may have run, and a second SET NX would then refuse the request as its own replay.
    """
    connection = _line_connection()
    try:
        connection.send_packed_command(connection.pack_commands(commands))
        return [connection.read_response() for _ in commands]
    except BaseException:
        connection.disconnect()
        raise


def _line_connection():
    pid = os.getpid()
    if getattr(_line, "pid", None) != pid:  # first use in this thread, or a forked child
        from django_redis import get_redis_connection

        pool = get_redis_connection("default").connection_pool
        _line.connection, _line.pid = pool.connection_class(**pool.connection_kwargs), pid
    connection = _line.connection
    if connection.is_connected:
        try:
            stale = connection.can_read()  # a reply nobody read, or the server's close
        except (RedisError, OSError):
            stale = True
        if stale:
            connection.disconnect()
    return connection
