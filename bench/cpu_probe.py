"""Thread CPU of chosen functions inside the gunicorn workers, under the bench's load.

py-spy samples count a thread waiting in the database driver or a socket as busy on this
machine, so its figures mix CPU and waits. This probe wraps the functions below and adds up
`time.thread_time_ns()` (the calling thread's CPU, user + system) spent inside each call,
inclusive of what it calls. The wrapping costs a few microseconds per call, so the probe runs
as its own load after the measured trials (`api_cashbacks.py --cpu-probe SECONDS`), never
during them.

The bench's gunicorn config installs it in every worker when CEZBEK_BENCH_CPU_PROBE_DIR is set;
each worker writes its totals there as it exits, and `summary` adds them up.
"""

from __future__ import annotations

import functools
import gc
import importlib
import json
import os
import sys
import time
from pathlib import Path

ENV = "CEZBEK_BENCH_CPU_PROBE_DIR"
REQUEST = "django.core.handlers.wsgi.WSGIHandler.__call__"

# (module, class or None, function): from the request down to the broker and database calls.
TARGETS = [
    ("django.core.handlers.wsgi", "WSGIHandler", "__call__"),
    ("cezbek.middleware", "RequestMetricsMiddleware", "__call__"),
    ("rest_framework.views", "APIView", "dispatch"),
    ("partners.authentication", "SignedRequestAuthentication", "authenticate"),
    ("partners.guards", None, "request_admit"),
    ("cashback.apis", None, "purchase_input"),
    ("cashback.apis", None, "transaction_document"),
    ("cashback.services", None, "transaction_record"),
    ("cashback.services", None, "transaction_new"),
    ("loyalty.services", None, "loyalty_state_lock"),
    ("loyalty.services", None, "loyalty_purchase_plan"),
    ("loyalty.services", None, "loyalty_plan_writes"),
    ("wallets.services", None, "payout_writes"),
    ("wallets.services", None, "payout_enqueue"),
    ("cezbek.sql", None, "run_together"),
    ("cezbek.sql", None, "insert_chain"),
    ("django.db.backends.base.base", "BaseDatabaseWrapper", "commit"),
    ("celery.app.base", "Celery", "send_task"),
    ("kombu.messaging", "Producer", "publish"),
    ("redis.client", "Redis", "execute_command"),
    ("redis.client", "Pipeline", "execute"),
    ("psycopg.cursor", "Cursor", "execute"),
    # around the application's own work: the server, Django's handler and DRF's steps
    ("gunicorn.workers.sync", "SyncWorker", "handle"),
    ("django.core.handlers.wsgi", "WSGIRequest", "__init__"),
    ("django.core.handlers.base", "BaseHandler", "get_response"),
    ("django.core.handlers.base", "BaseHandler", "_get_response"),
    ("rest_framework.views", "APIView", "initialize_request"),
    ("rest_framework.views", "APIView", "initial"),
    ("rest_framework.views", "APIView", "finalize_response"),
    ("rest_framework.renderers", "JSONRenderer", "render"),
    ("cashback.apis", "CashbackCollectionApi", "post"),
    ("django.db.transaction", "Atomic", "__enter__"),
    ("django.db.transaction", "Atomic", "__exit__"),
    ("cezbek.metrics", None, "request_observe"),
    ("logging", "Logger", "_log"),
]

_stats: dict[str, list[int]] = {}


def _wrap(fn, key: str):
    @functools.wraps(fn)
    def measured(*args, **kwargs):
        started = time.thread_time_ns()
        try:
            return fn(*args, **kwargs)
        finally:
            entry = _stats.setdefault(key, [0, 0])
            entry[0] += time.thread_time_ns() - started
            entry[1] += 1

    return measured


def _gc_measured(phase: str, info: dict, _started=[0]) -> None:
    """gc.callbacks: thread CPU of each collection, by generation (inside whatever function triggered it)."""
    if phase == "start":
        _started[0] = time.thread_time_ns()
        return
    entry = _stats.setdefault(f"gc: generation {info['generation']} collections", [0, 0])
    entry[0] += time.thread_time_ns() - _started[0]
    entry[1] += 1


def install() -> None:
    """Wraps every target that exists in this code (older revisions lack some; they are skipped),
    and times the garbage collector's collections."""
    gc.callbacks.append(_gc_measured)
    for module_name, class_name, name in TARGETS:
        try:
            module = importlib.import_module(module_name)
            owner = getattr(module, class_name) if class_name else module
            original = owner.__dict__[name] if class_name else getattr(module, name)
        except (ImportError, AttributeError, KeyError):
            continue
        key = f"{module_name}.{class_name + '.' if class_name else ''}{name}"
        measured = _wrap(original, key)
        setattr(owner, name, measured)
        if not class_name:  # the same function imported by name into other modules
            for other in list(sys.modules.values()):
                if other is not module and getattr(other, name, None) is original:
                    setattr(other, name, measured)


def dump() -> None:
    directory = os.environ.get(ENV)
    if directory:
        Path(directory, f"cpu-{os.getpid()}.json").write_text(json.dumps(_stats))


def summary(directory: Path) -> tuple[int, list[tuple[str, float, int]]]:
    """(requests, [(function, ms of thread CPU per request, calls)]) over the workers' files."""
    totals: dict[str, list[int]] = {}
    for path in Path(directory).glob("cpu-*.json"):
        for key, (ns, calls) in json.loads(path.read_text()).items():
            entry = totals.setdefault(key, [0, 0])
            entry[0] += ns
            entry[1] += calls
    requests = totals.get(REQUEST, [0, 0])[1]
    rows = sorted(((key, ns / 1e6 / max(requests, 1), calls) for key, (ns, calls) in totals.items()), key=lambda row: -row[1])
    return requests, rows


def run(*, bench, ctx: dict, args, workers: int, seconds: int, trial_no: int) -> dict | None:
    """Starts gunicorn with the probe, warms up, loads it for `seconds`, stops it and reports
    (bench: the api_cashbacks module)."""
    import random
    import shutil

    directory = bench.OUT / f"cpu-probe-{ctx['run_id']}"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    bench.log(f"\n== CPU probe: gunicorn -w {workers}, wrk -c {args.connections}, {seconds}s, thread CPU per function")
    pool_base = 1_100_000_000 + trial_no * 1_000_000
    rng = random.Random(args.seed * 1000 + trial_no)
    g = bench.Gunicorn(workers, {**ctx["env"], ENV: str(directory)}, bench.OUT / f"gunicorn-cpu-probe-w{workers}.log",
                       access_log=args.access_log)
    try:
        g.wait_ready()
        warm_file, load_file = bench.OUT / "requests-cpu-probe-warmup.tsv", bench.OUT / "requests-cpu-probe.tsv"
        bench.write_requests(warm_file, max(args.warmup, 1) * args.expected_rate * 2, secret=ctx["secret"], rng=rng,
                             prefix=f"{ctx['run_id']}-c-w", pool_base=pool_base, customers=args.customers)
        bench.write_requests(load_file, seconds * args.expected_rate * 2, secret=ctx["secret"], rng=rng,
                             prefix=f"{ctx['run_id']}-c", pool_base=pool_base, customers=args.customers)
        wrk_args = dict(port=g.port, connections=args.connections, threads=args.wrk_threads, key_id=ctx["key_id"])
        bench.run_wrk(ctx["wrk"], seconds=max(args.warmup, 1), requests_file=warm_file, **wrk_args)
        load = bench.run_wrk(ctx["wrk"], seconds=seconds, requests_file=load_file, **wrk_args)
    finally:
        g.stop()  # the workers write their totals as they exit
    bad = load["non2xx"] + load["exhausted"] + sum(load["errors"][k] for k in ("connect", "read", "write", "timeout"))
    requests, rows = summary(directory)
    lines = [
        f"CPU probe: {requests} requests (warm-up included) in {len(list(directory.glob('cpu-*.json')))} workers; "
        f"thread CPU (user + system) inside each function, inclusive, per request",
        "",
        "| function | ms/request | calls |",
        "| --- | ---: | ---: |",
        *(f"| {key} | {ms:.3f} | {calls} |" for key, ms, calls in rows),
    ]
    if bad:
        lines.append(f"\nINVALID: the load had {bad} errors (statuses {load['statuses']}); see {g.log.name}")
    text = "\n".join(lines) + "\n"
    out = bench.OUT / f"cpu-probe-{ctx['run_id']}.md"
    out.write_text(text)
    bench.log(text)
    bench.log(f"CPU probe: {out}")
    return {"file": str(out), "requests": requests, "errors": bad, "functions": [{"function": k, "ms_per_request": ms, "calls": c} for k, ms, c in rows]}
