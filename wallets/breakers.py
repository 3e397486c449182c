"""One circuit breaker per provider, its state shared by every worker process (Redis when configured).

pybreaker's CircuitBreaker serialises calls on a per-object lock, so each thread gets its own
breaker object; the state they share lives in the storage.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pybreaker
from django.conf import settings

from wallets.providers import Refused, TransferNotFound, Unavailable

_local = threading.local()
_memory_storage: dict[str, pybreaker.CircuitMemoryStorage] = {}
_memory_lock = threading.Lock()


def _is_business_outcome(exc: BaseException) -> bool:
    """One account's refusal (or an inquiry's 'no such transfer') says nothing about the provider's health."""
    return (isinstance(exc, Refused) and not isinstance(exc, Unavailable)) or isinstance(exc, TransferNotFound)


def _namespace(code: str) -> str:
    return f"{settings.CACHES['default'].get('KEY_PREFIX', 'cezbek')}:breaker:{code}"


# How long a failure counter read by `breakers_open` stands in for Redis's: the route is chosen,
# claimed and sent within this, or pybreaker writes the counter as usual.
PRIMED_SECONDS = 2.0


class SharedRedisStorage(pybreaker.CircuitRedisStorage):
    """pybreaker's Redis storage, told the failure counter by the MGET that chose the route.

    Routing has just read every candidate's state and failure counter in one round trip. Left
    alone, pybreaker SETs the failure counter to 0 after every success although it was 0: one
    more round trip per payout. Here a success writes the counter only when routing saw it
    above 0 (or saw nothing within PRIMED_SECONDS). The state itself is still read from Redis
    right before each call, so a breaker opened meanwhile by another process stops the send.
    The price: a failure counted by another process during our call survives our success
    until the next success through this breaker resets it, so the breaker opens no later
    than pybreaker's own.
    """

    _primed: tuple[int, float] | None = None

    def prime(self, *, fail_counter: int) -> None:
        self._primed = (fail_counter, time.monotonic())

    def forget(self) -> None:
        self._primed = None

    def increment_counter(self) -> None:
        self._primed = None
        super().increment_counter()

    def reset_counter(self) -> None:
        primed, self._primed = self._primed, None
        if primed is not None and primed[0] == 0 and time.monotonic() - primed[1] < PRIMED_SECONDS:
            return
        super().reset_counter()


def _storage(code: str) -> pybreaker.CircuitBreakerStorage:
    if settings.REDIS_URL:
        from django_redis import get_redis_connection

        return SharedRedisStorage(pybreaker.STATE_CLOSED, get_redis_connection("default"), namespace=_namespace(code))
    with _memory_lock:
        return _memory_storage.setdefault(code, pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED))


def breaker_for(code: str) -> pybreaker.CircuitBreaker:
    """This thread's breaker for a provider."""
    breakers = getattr(_local, "breakers", None)
    if breakers is None:
        breakers = _local.breakers = {}
    breaker = breakers.get(code)
    if breaker is None:
        breaker = breakers[code] = pybreaker.CircuitBreaker(
            fail_max=settings.CEZBEK_BREAKER_FAIL_MAX,
            reset_timeout=settings.CEZBEK_BREAKER_RESET_SECONDS,
            exclude=[_is_business_outcome],
            state_storage=_storage(code),
            name=code,
            # The call that trips the breaker must keep its own outcome: an unknown outcome
            # replaced by CircuitBreakerError would look like "nothing sent".
            throw_new_error_on_trip=False,
        )
    return breaker


def breaker_priming_take(code: str) -> tuple[int, float] | None:
    """Takes what routing just read of this provider's failure counter (`breakers_open`) from this
    thread's breaker, to hand to the thread that makes the call (`breaker_priming_give`)."""
    storage = breaker_for(code)._state_storage
    if not isinstance(storage, SharedRedisStorage):
        return None
    primed, storage._primed = storage._primed, None
    return primed


def breaker_priming_give(code: str, primed: tuple[int, float] | None) -> None:
    storage = breaker_for(code)._state_storage
    if isinstance(storage, SharedRedisStorage):
        storage._primed = primed


def breaker_is_open(code: str) -> bool:
    """Open and still cooling down: no traffic. Once the reset timeout passes, one trial call may go."""
    storage = breaker_for(code)._state_storage
    if storage.state != pybreaker.STATE_OPEN:
        return False
    opened_at = storage.opened_at
    return opened_at is not None and datetime.now(UTC) < opened_at + timedelta(seconds=settings.CEZBEK_BREAKER_RESET_SECONDS)


def breakers_open(codes: list[str]) -> set[str]:
    """Which of these providers' breakers are open and cooling down: one Redis round trip for all."""
    if not codes:
        return set()
    if not settings.REDIS_URL:
        return {code for code in codes if breaker_is_open(code)}
    from django_redis import get_redis_connection

    # pybreaker's own keys (CircuitRedisStorage): <namespace>:pybreaker:state, :opened_at (epoch s)
    # and :fail_counter.
    names = ("state", "opened_at", "fail_counter")
    keys = [f"{_namespace(code)}:pybreaker:{name}" for code in codes for name in names]
    values = get_redis_connection("default").mget(keys)
    now = datetime.now(UTC).timestamp()
    reset = settings.CEZBEK_BREAKER_RESET_SECONDS
    cooling = set()
    for code, state, opened_at, fail_counter in zip(codes, values[0::3], values[1::3], values[2::3], strict=True):
        if state is None:
            continue  # never used: pybreaker initialises it on first use
        if state == pybreaker.STATE_OPEN.encode() and opened_at is not None and now < int(opened_at) + reset:
            cooling.add(code)
            continue
        storage = breaker_for(code)._state_storage
        if isinstance(storage, SharedRedisStorage):
            storage.prime(fail_counter=int(fail_counter or 0))
    return cooling


def breaker_state(code: str) -> str:
    return breaker_for(code).current_state


def breakers_reset() -> None:
    """Closes every breaker (tests and operators after an incident)."""
    from wallets.providers import PROVIDER_CODES

    for code in PROVIDER_CODES:
        breaker_for(code).close()
