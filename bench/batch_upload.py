#!/usr/bin/env python
"""Batch upload: 100,000 purchases through the signed API, recorded by a real Celery worker (docs/benchmarks.md).

    .venv/bin/python bench/batch_upload.py [--rows 100000] [--customers 20000] [--concurrency 2]
                                           [--chunk-size N] [--wait-quiet 300] [--rev HEAD]

One run:
  1. recreates the scratch database `cezbek_batch` on the local PostgreSQL and migrates it; configures
     wallets LSAJA/GPAID/JOSVO, the demo ladder (BRONZE promote after 5 / SILVER after 10, 90 days /
     GOLD 180 days, rewards for the 5th and 10th purchases), a global 1 % cashback rule and a partner's
     2 % rule (≥ 2 items, ≥ 500,000.00, capped at 25,000.00), one partner with a key; flushes Redis DB 12
     (cache, replay guard, rate limits and the Celery broker of this run);
  2. starts the web process as the Procfile does (`gunicorn cezbek.wsgi --config gunicorn.conf.py`, 2 sync
     workers, its 30 s timeout, DEBUG off) and the worker (`celery -A cezbek worker -P prefork -c 2`,
     CEZBEK's app, Redis broker, consuming the batch queue; the payout tasks the batch queues wait in the
     default queue — delivering them is what `bench/payout_drain.py` measures);
  3. generates the file: `--rows` purchases of `--customers` customers in random order (so loyalty
     states are created and updated, rewards paid, tiers promoted), random quantities, amounts and
     wallets, half with an e-mail, plus 0.5 % rows that repeat an earlier row (duplicates) and 0.5 %
     with an invalid amount (failed);
  4. waits for a quiet machine (no other benchmark, under 0.25 cores busy for 3 s; `--wait-quiet`),
     then POSTs the file to /api/v1/batches over HTTP, signed like any partner request, and polls
     GET /api/v1/batches/{id} every second until DONE; meanwhile samples the CPU of the worker's
     processes, gunicorn, PostgreSQL, Redis and the rest of the machine from /proc;
  5. checks the books: every row has an outcome, the counts add up, one transaction per accepted row,
     one payout per transaction with a total > 0 and one payout task queued for each; downloads the
     results through GET /api/v1/batches/{id}/results and checks its rows.
Prints the upload time, the processing time, rows/s and the time from the first byte sent to DONE
(the figure the target is about: 100,000 rows in under 5 minutes). Writes everything to
bench/out/batch-upload-<stamp>/ (results.json, logs). Exits non-zero when the books do not add up;
missing the target is a measurement, not a failure.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUT = BENCH / "out"
VENV_BIN = ROOT / ".venv" / "bin"
SRC = ROOT
TARGET_SECONDS = 300.0
PATH = "/api/v1/batches"

sys.path.insert(0, str(BENCH))
from payout_drain import (  # noqa: E402 - the shared /proc and machine helpers
    all_pids,
    export_revision,
    free_port,
    proc_comm,
    proc_stat,
    wait_quiet,
)


def log(msg: str = "") -> None:
    print(msg, flush=True)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=100_000, help="purchase rows in the file (default 100000)")
    p.add_argument("--customers", type=int, default=20_000, help="distinct MSISDNs (default 20000: 5 purchases each on average)")
    p.add_argument("--concurrency", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--chunk-size", type=int, default=None, help="CEZBEK_BATCH_CHUNK_SIZE (default: the application's)")
    p.add_argument("--web-workers", type=int, default=2, help="gunicorn sync workers (default 2)")
    p.add_argument("--database", default="cezbek_batch", help="scratch database, dropped and recreated")
    p.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server URL (no database)")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/12", help="Redis URL of a DB number to flush and use")
    p.add_argument("--timeout", type=float, default=1200, help="give up after this many seconds (default 1200)")
    p.add_argument("--wait-quiet", type=int, default=300, metavar="SECONDS",
                   help="wait up to SECONDS for a quiet machine before the upload (default 300); the figures record the load either way")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--rev", default=None, help="run the application code of this git revision (exported to bench/out/src-<sha>)")
    return p.parse_args()


# --- setup ----------------------------------------------------------------------------------------


def bench_env(args, port: int, queue: str) -> dict:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(SRC),
        DJANGO_SETTINGS_MODULE="cezbek.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="bench-only-not-a-secret-" + "x" * 40,
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DJANGO_SECURE_SSL_REDIRECT="0",
        CEZBEK_LOG_LEVEL="WARNING",
        CEZBEK_VAR_DIR=str(OUT / "batch-var"),
        CEZBEK_CACHE_PREFIX="cezbek-batch-bench",
        CEZBEK_QUEUE=queue,
        DATABASE_URL=f"{args.pg}/{args.database}",
        REDIS_URL=args.redis,
        CELERY_BROKER_URL=args.redis,
        CELERY_TASK_ALWAYS_EAGER="0",
        GUNICORN_BIND=f"127.0.0.1:{port}",
        WEB_CONCURRENCY=str(args.web_workers),
        PYTHONDONTWRITEBYTECODE="1",
    )
    if args.chunk_size:
        env["CEZBEK_BATCH_CHUNK_SIZE"] = str(args.chunk_size)
    return env


def database_recreate(args) -> None:
    import psycopg

    with psycopg.connect(f"{args.pg}/postgres", autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (args.database,))
        conn.execute(f'DROP DATABASE IF EXISTS "{args.database}"')
        conn.execute(f'CREATE DATABASE "{args.database}"')


def configure() -> dict:
    """What docs/benchmarks.md's API bench configures: wallets, the demo ladder, two rules, a partner and its key."""
    from datetime import timedelta

    from django.utils import timezone

    from cashback.models import CashbackRule
    from loyalty.models import RewardRule, TierLevel
    from partners.models import Partner
    from partners.services import credential_issue
    from wallets.models import Wallet

    for code, name in [("LSAJA", "LinkSaja"), ("GPAID", "GoPaid"), ("JOSVO", "Josvo")]:
        Wallet.objects.create(code=code, name=name)
    bronze = TierLevel.objects.create(name="BRONZE", rank=1, promote_after=5, validity_days=None)
    silver = TierLevel.objects.create(name="SILVER", rank=2, promote_after=10, validity_days=90)
    gold = TierLevel.objects.create(name="GOLD", rank=3, promote_after=None, validity_days=180)
    for tier, nth, reward in [(bronze, 5, "5000"), (silver, 5, "10000"), (silver, 10, "25000"), (gold, 5, "25000"), (gold, 10, "50000")]:
        RewardRule.objects.create(tier=tier, nth=nth, reward=Decimal(reward))
    partner = Partner.objects.create(code="BATCHBENCH", name="Batch bench", rate_limit_per_minute=100_000_000)
    since = timezone.now() - timedelta(days=1)
    CashbackRule.objects.create(name="Everything 1%", percentage=Decimal("1.00"), valid_from=since)
    CashbackRule.objects.create(
        name="Bench 2%", partner=partner, min_quantity=2, min_amount=Decimal("500000.00"), percentage=Decimal("2.00"),
        max_cashback=Decimal("25000.00"), valid_from=since,
    )
    credential = credential_issue(partner=partner)
    return {"key_id": credential.key_id, "secret": credential.secret}


def file_generate(args) -> tuple[bytes, dict]:
    rnd = random.Random(args.seed)
    customers = [f"62812{n:08d}" for n in rnd.sample(range(10**8), args.customers)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["partner_ref", "msisdn", "email", "quantity", "amount", "wallet"])
    rows: list[list] = []
    valid: list[int] = []  # rows that are new, valid purchases: repeating one makes a duplicate
    expected = {"duplicate": 0, "invalid": 0}
    for i in range(args.rows):
        draw = rnd.random()
        if draw < 0.005 and valid:
            rows.append(list(rows[rnd.choice(valid)]))  # the same purchase again
            expected["duplicate"] += 1
            continue
        msisdn = rnd.choice(customers)
        amount = f"{rnd.randint(10_000, 2_000_000)}.{rnd.randint(0, 99):02d}"
        if draw > 0.995:
            amount = "-" + amount
            expected["invalid"] += 1
        email = f"c{msisdn[-6:]}@example.id" if rnd.random() < 0.5 else ""
        if not amount.startswith("-"):
            valid.append(len(rows))
        rows.append([f"BENCH/{i:07d}", msisdn, email, rnd.randint(1, 5), amount, rnd.choice(["LSAJA", "GPAID", "JOSVO"])])
    writer.writerows(rows)
    return out.getvalue().encode(), expected


# --- processes ------------------------------------------------------------------------------------


def start(command: list[str], env: dict, log_path: Path) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=SRC, env=env, stdout=open(log_path, "a"), stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
    except ProcessLookupError:
        pass


def wait_http(url: str, seconds: float, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"{what} did not answer within {seconds}s")


def wait_log(path: Path, text: bytes, seconds: float, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with {process.returncode}: {path}")
        if text in path.read_bytes():
            return
        time.sleep(0.3)
    raise SystemExit(f"{what} not ready within {seconds}s: {path}")


class Meter:
    """CPU seconds (user + system) of the worker's and gunicorn's sessions, of the PostgreSQL backends
    connected to our database (the worker and gunicorn keep theirs: CONN_MAX_AGE), of Redis (shared
    with others' tests), and of the machine."""

    def __init__(self, sessions: dict[str, int], database: str):
        self.sessions, self.database = sessions, database

    def _backends(self) -> set[int]:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [self.database])
            return {row[0] for row in cursor.fetchall()}

    def sample(self) -> dict[str, float]:
        out = {name: 0.0 for name in [*self.sessions, "postgres", "redis"]}
        by_sid = {sid: name for name, sid in self.sessions.items()}
        backends = self._backends()
        for pid in all_pids():
            stat = proc_stat(pid)
            if stat is None:
                continue
            sid, cpu = stat
            if sid in by_sid:
                out[by_sid[sid]] += cpu
            elif pid in backends:
                out["postgres"] += cpu
            elif proc_comm(pid).startswith("redis-server"):
                out["redis"] += cpu
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        out["machine_busy"] = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
        out["machine_processes"] = (ticks[0] + ticks[1] + ticks[2]) / os.sysconf("SC_CLK_TCK")
        out["t"] = time.monotonic()
        return out


def cpu_between(a: dict, b: dict, rows: int) -> dict:
    seconds = b["t"] - a["t"]
    ours = [k for k in a if k not in ("t", "machine_busy", "machine_processes")]
    spent = {k: b[k] - a[k] for k in ours}
    others = (b["machine_processes"] - a["machine_processes"]) - sum(spent.values())
    return {
        "seconds": seconds,
        "cores": {**{k: v / seconds for k, v in spent.items()}, "others": others / seconds,
                  "machine_busy": (b["machine_busy"] - a["machine_busy"]) / seconds},
        "ms_per_row": {k: 1000 * v / rows for k, v in spent.items()},
    }


# --- the API --------------------------------------------------------------------------------------


class Api:
    def __init__(self, base: str, key_id: str, secret: str):
        from partners.signing import signed_headers

        self.base, self.key_id, self.secret, self.sign = base, key_id, secret, signed_headers
        self.polls = 0

    def request(self, method: str, path: str, body: bytes = b"", content_type: str | None = None, timeout: float = 120):
        headers = self.sign(key_id=self.key_id, secret=self.secret, method=method, path=path, body=body, timestamp=int(time.time()))
        if content_type:
            headers["Content-Type"] = content_type
        req = urllib.request.Request(self.base + path, data=body if method == "POST" else None, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def progress(self, batch_id: str) -> dict:
        self.polls += 1  # a query that differs per poll: two polls in one second are no replay
        status, body = self.request("GET", f"{PATH}/{batch_id}?poll={self.polls}")
        if status != 200:
            raise RuntimeError(f"GET progress: {status} {body[:300]!r}")
        return json.loads(body)


def queue_length(redis, queue: str) -> int:
    return sum(redis.llen(queue + suffix) for suffix in ("", "\x06\x163", "\x06\x166", "\x06\x169"))


# --- the run --------------------------------------------------------------------------------------


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    global SRC
    revision = subprocess.run(["git", "rev-parse", "--short", args.rev or "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    modified: list[str] = []
    if args.rev:
        SRC = export_revision(revision)
    else:
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout
        modified = [line[3:] for line in status.split("\n") if line.strip()]
    sys.path.insert(0, str(SRC))
    stamp = datetime.now().strftime("%Y%m%d%H%M%S")
    run_dir = OUT / f"batch-upload-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    queue = f"batch-bench-{os.getpid()}"
    port = free_port()
    env = bench_env(args, port, queue)
    os.environ.update(env)
    log(f"application code: {revision}{' (export in ' + str(SRC) + ')' if args.rev else ''}"
        f"{' with uncommitted changes to ' + ', '.join(modified) if modified else ''}; output {run_dir}")

    database_recreate(args)
    subprocess.run([str(VENV_BIN / "python"), "manage.py", "migrate", "--noinput", "-v", "0"], cwd=SRC, env=env, check=True)
    import django

    django.setup()
    import redis as redis_lib
    from django.conf import settings

    redis = redis_lib.Redis.from_url(args.redis)
    redis.flushdb()
    credentials = configure()
    batch_queue = settings.CEZBEK_BATCH_QUEUE
    chunk_size = settings.CEZBEK_BATCH_CHUNK_SIZE
    data, expected = file_generate(args)
    log(f"file: {args.rows} rows of {args.customers} customers, {len(data) / 1e6:.1f} MB "
        f"({expected['duplicate']} repeats, {expected['invalid']} invalid); chunks of {chunk_size} rows")

    web = worker = None
    failed = False
    result: dict = {"args": vars(args), "revision": revision, "modified_files": modified, "chunk_size": chunk_size, "stamp": stamp,
                    "cpu_count": os.cpu_count(), "file_bytes": len(data), "expected": expected}
    log(f"waiting up to {args.wait_quiet}s for a quiet machine")
    result["quiet"] = wait_quiet(args.wait_quiet)  # before our gunicorn starts: it counts any gunicorn as another benchmark
    try:
        web = start([str(VENV_BIN / "gunicorn"), "cezbek.wsgi", "--config", str(SRC / "gunicorn.conf.py")], env, run_dir / "gunicorn.log")
        worker = start([str(VENV_BIN / "celery"), "-A", "cezbek", "worker", "-P", "prefork", "-c", str(args.concurrency), "-Q", batch_queue,
                        "-l", "info", "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"batch-bench-{os.getpid()}@%h"],
                       dict(env, CEZBEK_LOG_LEVEL="INFO"), run_dir / "worker.log")
        wait_http(f"http://127.0.0.1:{port}/healthz", 60, web, "gunicorn")
        wait_log(run_dir / "worker.log", b" ready.", 60, worker, "the worker")
        api = Api(f"http://127.0.0.1:{port}", credentials["key_id"], credentials["secret"])
        meter = Meter({"worker": worker.pid, "gunicorn": web.pid}, args.database)
        result["loadavg_before"] = os.getloadavg()

        # --- upload ---
        samples = [meter.sample()]
        started = time.monotonic()
        status, body = api.request("POST", PATH, data, "text/csv")
        uploaded = time.monotonic()
        samples.append(meter.sample())
        if status != 202:
            raise SystemExit(f"upload refused: {status} {body[:500]!r}")
        batch_id = json.loads(body)["id"]
        log(f"uploaded in {uploaded - started:.2f}s: batch {batch_id}")

        # --- processing ---
        progress = None
        last_print = 0.0
        trace = []
        while time.monotonic() - started < args.timeout:
            progress = api.progress(batch_id)
            now = time.monotonic()
            trace.append((round(now - started, 2), progress["processed"]))
            if now - last_print >= 15 or progress["status"] == "DONE":
                log(f"  {now - started:6.1f}s {progress['status']:7} {progress['processed']:>7}/{progress['total']} "
                    f"(load {os.getloadavg()[0]:.2f})")
                last_print = now
            if progress["status"] == "DONE":
                break
            time.sleep(1.0)
        done_at = time.monotonic()
        samples.append(meter.sample())
        result["loadavg_after"] = os.getloadavg()
        if progress is None or progress["status"] != "DONE":
            raise SystemExit(f"not DONE after {args.timeout}s: {progress}")

        from cashback.models import Batch, BatchRow, Transaction
        from wallets.models import Payout

        batch = Batch.objects.get(public_id=batch_id)
        processing = (batch.finished_at - batch.started_at).total_seconds()
        total_seconds = done_at - started  # first byte sent to DONE seen (polled every second)
        result.update({
            "batch": {k: progress[k] for k in ("total", "processed", "accepted", "duplicate", "failed")},
            "chunks": batch.chunks,
            "upload_seconds": uploaded - started,
            "processing_seconds": processing,
            "rows_per_second_processing": batch.total / processing,
            "total_seconds": total_seconds,
            "rows_per_second_total": batch.total / total_seconds,
            "cpu_upload": cpu_between(samples[0], samples[1], batch.total),
            "cpu_processing": cpu_between(samples[1], samples[2], batch.total),
            "trace": trace,
        })

        # --- the books ---
        pending = BatchRow.objects.filter(batch=batch, outcome="pending").count()
        transactions = Transaction.objects.filter(partner_ref__startswith="BENCH/").count()
        payouts = Payout.objects.count()
        with_total = Transaction.objects.filter(total__gt=0).count()
        # The last chunk's payouts are queued when it commits, i.e. just after DONE became visible.
        deadline = time.monotonic() + 60
        while (payout_tasks := queue_length(redis, queue)) < payouts and time.monotonic() < deadline:
            time.sleep(0.5)
        t0 = time.monotonic()
        status, results_csv = api.request("GET", f"{PATH}/{batch_id}/results")
        results_seconds = time.monotonic() - t0
        outcomes: dict[str, int] = {}
        for row in csv.DictReader(io.StringIO(results_csv.decode())):
            outcomes[row["outcome"]] = outcomes.get(row["outcome"], 0) + 1
        checks = {
            "no_row_pending": pending == 0,
            "counts_add_up": batch.processed == batch.total == batch.accepted + batch.duplicate + batch.failed,
            "one_transaction_per_accepted_row": transactions == batch.accepted,
            "duplicates_as_generated": batch.duplicate == expected["duplicate"],
            "failed_as_generated": batch.failed == expected["invalid"],
            "one_payout_per_transaction_with_a_total": payouts == with_total,
            "one_payout_task_queued_per_payout": payout_tasks == payouts,
            "results_file_complete": status == 200 and outcomes == {"accepted": batch.accepted, "duplicate": batch.duplicate, "failed": batch.failed},
        }
        result.update({"checks": checks, "payouts": payouts, "payout_tasks_queued": payout_tasks,
                       "results_seconds": results_seconds, "results_bytes": len(results_csv)})
        failed = not all(checks.values())
    finally:
        stop(worker)
        stop(web)
        (run_dir / "results.json").write_text(json.dumps(result, indent=1, default=str))

    c = result["cpu_processing"]
    log("")
    log(f"rows {result['batch']['total']} (accepted {result['batch']['accepted']}, duplicate {result['batch']['duplicate']}, "
        f"failed {result['batch']['failed']}) in {result['chunks']} chunks of {chunk_size}; worker -P prefork -c {args.concurrency}")
    log(f"upload (POST, parse, store): {result['upload_seconds']:.2f}s")
    log(f"processing (first chunk started → last chunk committed): {result['processing_seconds']:.1f}s = "
        f"{result['rows_per_second_processing']:.0f} rows/s")
    log(f"total (first byte sent → DONE seen): {result['total_seconds']:.1f}s = {result['rows_per_second_total']:.0f} rows/s "
        f"({'meets' if result['total_seconds'] < TARGET_SECONDS else 'misses'} the {TARGET_SECONDS:.0f}s target)")
    log("CPU while processing, ms per row: " + ", ".join(f"{k} {v:.2f}" for k, v in c["ms_per_row"].items())
        + f"; cores busy: machine {c['cores']['machine_busy']:.2f} of {os.cpu_count()}, other processes {c['cores']['others']:.2f}")
    log(f"load average before {tuple(round(x, 2) for x in result['loadavg_before'])}, after {tuple(round(x, 2) for x in result['loadavg_after'])}")
    log(f"payouts created {result['payouts']}, payout tasks queued {result['payout_tasks_queued']} (not delivered in this bench)")
    log(f"results file: {result['results_bytes'] / 1e6:.1f} MB in {result['results_seconds']:.2f}s")
    log("checks: " + ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in result["checks"].items()))
    log(f"results: {run_dir}/results.json")
    redis.flushdb()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
