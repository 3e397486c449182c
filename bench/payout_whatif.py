"""Bench-only patches that estimate what a suggested change to the payout path would buy.

Never imported by the application. bench/payout_worker.py applies them to a real worker
(`bench/payout_drain.py --experiment ...`), bench/payout_probe.py to in-process deliveries.
Each one stands for a change the lead engineer may make properly in the application:

  reuse-db          keep database connections across tasks (Celery's CELERY_DB_REUSE_MAX; in the
                    probe: do not close the connection around each payout).
  no-proxy-env      requests.Session.trust_env = False on the provider clients: requests then stops
                    reading the proxy/netrc/CA settings from the environment on every request.
  breaker-local     breaker state in process memory instead of Redis: the upper bound of what
                    caching the shared state (the read of the candidates' state, GET + SET around
                    the send) could save. Not a proposal to give up shared breakers as such.
  route-cache       the fee rows per wallet cached in the process for 5 s instead of one query
                    (with two joins) per payout (the application caches its routes since 9a16ac1).
  fresh-no-refusals no refusals query for a payout never claimed (lease 0: it has no attempts; the
                    application does this since bddaf95).
  server-binding    DATABASES OPTIONS server_side_binding=True: psycopg binds parameters on the
                    server and prepares a statement it has run 5 times, so PostgreSQL stops parsing
                    and planning the same few statements for every payout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

NAMES = ("reuse-db", "no-proxy-env", "breaker-local", "route-cache", "fresh-no-refusals", "server-binding")


@contextmanager
def no_proxy_env() -> Iterator[None]:
    import requests

    from wallets import providers

    original = requests.Session.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.trust_env = False

    requests.Session.__init__ = init
    providers._local.__dict__.clear()  # this thread's clients are built again, with the patch
    try:
        yield
    finally:
        requests.Session.__init__ = original
        providers._local.__dict__.clear()


@contextmanager
def breaker_local() -> Iterator[None]:
    import pybreaker

    from wallets import breakers

    original = breakers._storage
    memory: dict[str, pybreaker.CircuitMemoryStorage] = {}
    lock = threading.Lock()

    def storage(code: str) -> pybreaker.CircuitBreakerStorage:
        with lock:
            return memory.setdefault(code, pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED))

    original_open = getattr(breakers, "breakers_open", None)
    breakers._storage = storage
    if original_open is not None:  # the one-MGET read of every candidate's state
        breakers.breakers_open = lambda codes: {code for code in codes if breakers.breaker_is_open(code)}
    breakers._local.__dict__.clear()
    try:
        yield
    finally:
        breakers._storage = original
        if original_open is not None:
            breakers.breakers_open = original_open
        breakers._local.__dict__.clear()


@contextmanager
def route_cache(seconds: float = 5.0) -> Iterator[None]:
    from decimal import Decimal

    from wallets import selectors
    from wallets.models import Fee

    original = selectors.route_candidates
    cache: dict[int, tuple[float, list]] = {}

    def route_candidates(*, wallet_id: int, amount: Decimal, exclude=frozenset()):
        hit = cache.get(wallet_id)
        if hit is None or hit[0] < time.monotonic():
            rows = list(
                Fee.objects.filter(wallet_id=wallet_id, active=True, archived=False, provider__active=True)
                .values_list("flat_fee", "percent_fee", "provider__priority", "provider__code", "provider_id")
            )
            hit = cache[wallet_id] = (time.monotonic() + seconds, rows)
        return sorted(
            (selectors.fee_for(flat_fee=flat, percent_fee=pct, amount=amount), priority, code, provider_id)
            for flat, pct, priority, code, provider_id in hit[1]
            if code not in exclude
        )

    selectors.route_candidates = route_candidates
    try:
        yield
    finally:
        selectors.route_candidates = original


@contextmanager
def fresh_no_refusals() -> Iterator[None]:
    from wallets import selectors

    original = selectors.payout_refused_by

    def payout_refused_by(*, payout):
        if payout.lease == 0 and not payout.retried_at:
            return set()  # never claimed: no attempt exists
        return original(payout=payout)

    selectors.payout_refused_by = payout_refused_by
    try:
        yield
    finally:
        selectors.payout_refused_by = original


@contextmanager
def server_binding() -> Iterator[None]:
    from django.db import connections

    options = connections.settings["default"].setdefault("OPTIONS", {})
    before = options.get("server_side_binding", None)
    connections["default"].close()  # this thread's next connection is made with the option
    options["server_side_binding"] = True
    try:
        yield
    finally:
        if before is None:
            options.pop("server_side_binding", None)
        else:
            options["server_side_binding"] = before
        connections["default"].close()


PATCHES = {
    "server-binding": server_binding,
    "no-proxy-env": no_proxy_env,
    "breaker-local": breaker_local,
    "route-cache": route_cache,
    "fresh-no-refusals": fresh_no_refusals,
}


@contextmanager
def applied(names) -> Iterator[None]:
    """Applies the in-process patches among `names` ("reuse-db" is the caller's business)."""
    unknown = [n for n in names if n not in NAMES and not n.startswith("prefetch-")]
    if unknown:
        raise SystemExit(f"unknown experiment(s) {unknown}; known: {NAMES} and prefetch-N")
    with ExitStack() as stack:
        for name in names:
            if name in PATCHES:
                stack.enter_context(PATCHES[name]())
        yield
