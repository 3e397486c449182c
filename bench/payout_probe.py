"""What one payout costs, counted: SQL statements, commits, connections, Redis commands, HTTP requests.

Used by bench/payout_drain.py after django.setup(), with the same settings, database, Redis and
sandbox as its worker. `wallets.services.payout_deliver` runs in this process, one payout after
another, in passes over fresh payouts:
  * "as the worker runs it": every database connection closed before and after each payout, as
    Celery's Django fixup does around every task (so each payout opens one session);
  * "connection kept": the same without the closing (what a worker that keeps its connection does);
  * then one bench-only what-if after another (bench/payout_whatif.py), each on top of the last.
Wall time is split into SQL (statement round trips, client side), connection set-up, commits,
Redis and HTTP; the rest is Python. CPU is this process's CPU time (the sandbox's, PostgreSQL's
and Redis's own CPU are not in it).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from contextlib import ExitStack, contextmanager



def _sql_kind(sql: str) -> str:
    head = sql.lstrip()[:12].upper()
    verb = next((v for v in ("SELECT", "UPDATE", "INSERT", "DELETE", "SAVEPOINT", "RELEASE", "ROLLBACK") if head.startswith(v)), head.split(" ")[0])
    if verb == "SELECT":
        m = re.search(r'\bFROM\s+"?(\w+)"?', sql)
        joins = len(re.findall(r"\bJOIN\b", sql))
        return f"SELECT {m[1] if m else '?'}" + (f" (+{joins} join{'s' if joins > 1 else ''})" if joins else "")
    m = re.search(r'^\s*(?:UPDATE|INSERT INTO|DELETE FROM)\s+"?(\w+)"?', sql, re.I)
    return f"{verb} {m[1] if m else ''}".strip()


class Counters:
    def __init__(self):
        self.sql = Counter()
        self.sql_s = 0.0
        self.commits = 0
        self.commit_s = 0.0
        self.connects = 0
        self.connect_s = 0.0
        self.health_checks = 0
        self.redis = Counter()
        self.redis_s = 0.0
        self.http = Counter()
        self.http_s = 0.0


@contextmanager
def _patched(obj, name: str, make):
    original = getattr(obj, name)
    setattr(obj, name, make(original))
    try:
        yield
    finally:
        setattr(obj, name, original)


@contextmanager
def instrumented(c: Counters):
    import redis.client
    import requests
    from django.db import connection, connections

    wrapper_cls = type(connections["default"])

    def sql_wrapper(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            c.sql_s += time.perf_counter() - started
            c.sql[_sql_kind(sql)] += 1

    def timed(counter_name: str, seconds_name: str, key=None):
        def make(original):
            def wrapped(self, *args, **kwargs):
                started = time.perf_counter()
                try:
                    return original(self, *args, **kwargs)
                finally:
                    setattr(c, seconds_name, getattr(c, seconds_name) + time.perf_counter() - started)
                    counter = getattr(c, counter_name)
                    if isinstance(counter, Counter):
                        counter[key(self, *args, **kwargs)] += 1
                    else:
                        setattr(c, counter_name, counter + 1)
            return wrapped
        return make

    def redis_key(self, *args, **kwargs):
        return str(args[0]).upper() if args else "?"

    def http_key(self, request, **kwargs):
        path = request.path_url.split("?")[0]
        return f"{request.method} /{path.strip('/').split('/')[0]}/…"

    def count_health(original):
        def wrapped(self):
            c.health_checks += 1
            return original(self)
        return wrapped

    with ExitStack() as stack:
        stack.enter_context(connection.execute_wrapper(sql_wrapper))
        stack.enter_context(_patched(wrapper_cls, "connect", timed("connects", "connect_s")))
        stack.enter_context(_patched(wrapper_cls, "_commit", timed("commits", "commit_s")))
        stack.enter_context(_patched(wrapper_cls, "is_usable", count_health))
        stack.enter_context(_patched(redis.client.Redis, "execute_command", timed("redis", "redis_s", redis_key)))
        stack.enter_context(_patched(requests.Session, "send", timed("http", "http_s", http_key)))
        yield


def _db_stats() -> dict[str, int]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT xact_commit, sessions, tup_fetched, tup_returned, tup_inserted, tup_updated "
                    "FROM pg_stat_database WHERE datname = current_database()")
        row = cur.fetchone()
    return dict(zip(["xact_commit", "sessions", "tup_fetched", "tup_returned", "tup_inserted", "tup_updated"], row))


def _pass(queued: list[tuple[int, dict]], *, close_around: bool) -> dict:
    from django.db import connection, connections

    from wallets import services

    c = Counters()
    statuses = Counter()
    db0 = _db_stats()
    connection.close()
    with instrumented(c):
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for payout_id, hint in queued:
            if close_around:
                connection.close()  # Celery's fixup, task_prerun
            statuses[services.payout_deliver(payout_id=payout_id, hint=hint)] += 1
            if close_around:
                connection.close()  # and task_postrun
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    connection.close()  # the backend reports its statistics as it ends
    time.sleep(0.5)
    db1 = _db_stats()
    n = len(queued)
    # Redis commands in a pipeline are not seen one by one; django-redis and pybreaker do not use any here.
    python_s = wall - c.sql_s - c.connect_s - c.commit_s - c.redis_s - c.http_s
    return {
        "payouts": n,
        "statuses": dict(statuses),
        "wall_ms": 1000 * wall / n,
        "cpu_ms": 1000 * cpu / n,
        "sql_statements": sum(c.sql.values()) / n,
        "sql_by_kind": {k: v / n for k, v in c.sql.most_common()},
        "commits": c.commits / n,
        "connects": c.connects / n,
        "health_checks": c.health_checks / n,
        "redis_commands": sum(c.redis.values()) / n,
        "redis_by_command": {k: v / n for k, v in c.redis.most_common()},
        "http_requests": sum(c.http.values()) / n,
        "http_by_path": {k: v / n for k, v in c.http.most_common()},
        "pg_stat_database": {k: (db1[k] - db0[k]) / n for k in db0},
        "ms": {
            "sql": 1000 * c.sql_s / n,
            "connect": 1000 * c.connect_s / n,
            "commit": 1000 * c.commit_s / n,
            "redis": 1000 * c.redis_s / n,
            "http": 1000 * c.http_s / n,
            "python_rest": 1000 * python_s / n,
        },
    }


PASSES = [
    ("as the worker runs it", True, ()),
    ("connection kept (reuse-db)", False, ()),
    ("+ no-proxy-env", False, ("no-proxy-env",)),
    ("+ breaker-local", False, ("no-proxy-env", "breaker-local")),
    ("+ server-binding", False, ("no-proxy-env", "breaker-local", "server-binding")),
]


def probe_run(create, n: int) -> dict:
    """create(n, offset) -> [(payout id, hint)]. Runs the passes, each on fresh payouts; returns them and a summary.

    Passes after the first stand for changes suggested to the application (bench/payout_whatif.py),
    each on top of the previous one, so the difference between neighbours is what one change buys.
    """
    from payout_whatif import applied

    warm = create(5, 90_000_000)
    _pass(warm, close_around=False)  # imports, LinkSaja token, breaker keys, keep-alive sockets
    passes = []
    for i, (label, close_around, names) in enumerate(PASSES):
        with applied(names):
            _pass(create(3, 91_000_000 + 10 * i), close_around=close_around)  # warm the patched path
            result = _pass(create(n, 10_000_000 * (i + 1)), close_around=close_around)
        passes.append({"label": label, "experiments": list(names), **result})
    rows = [
        ("wall ms per payout", "wall_ms", ".1f"), ("CPU ms per payout (this process)", "cpu_ms", ".2f"),
        ("SQL statements", "sql_statements", ".1f"), ("commits (transactions ended)", "commits", ".1f"),
        ("connections opened", "connects", ".2f"), ("health checks (SELECT 1)", "health_checks", ".2f"),
        ("Redis commands", "redis_commands", ".1f"), ("HTTP requests", "http_requests", ".2f"),
    ]
    md = [f"In-process, one payout after another ({n} per pass; each pass adds one change to the one before):", "",
          "| per payout | " + " | ".join(p["label"] for p in passes) + " |", "|" + " --- |" * (len(passes) + 1)]
    for label, key, spec in rows:
        md.append(f"| {label} | " + " | ".join(format(p[key], spec) for p in passes) + " |")
    for part in ("sql", "connect", "commit", "redis", "http", "python_rest"):
        md.append(f"| wall ms in {part} | " + " | ".join(f"{p['ms'][part]:.2f}" for p in passes) + " |")
    for key in ("xact_commit", "sessions", "tup_fetched", "tup_returned"):
        md.append(f"| PostgreSQL {key} | " + " | ".join(f"{p['pg_stat_database'][key]:.1f}" for p in passes) + " |")
    kept = passes[1]
    md += ["", "SQL statements per payout (connection kept): " + ", ".join(f"{k} ×{v:g}" for k, v in kept["sql_by_kind"].items()),
           "", "Redis commands per payout (connection kept): " + ", ".join(f"{k} ×{v:g}" for k, v in kept["redis_by_command"].items()),
           "", "HTTP per payout: " + ", ".join(f"{k} ×{v:g}" for k, v in kept["http_by_path"].items())]
    return {"passes": passes, "markdown": "\n".join(md)}
