#!/usr/bin/env python
"""POST /api/v1/cashbacks through gunicorn vs. the database ceiling (docs/benchmarks.md).

    .venv/bin/python bench/api_cashbacks.py [--duration 20] [--connections 16] [--workers 3]

One run:
  1. recreates the scratch database cezbek_bench on the local PostgreSQL, migrates it and
     configures wallets, the tier ladder, cashback rules and one partner with credentials;
     Redis DB 14 (cache, replay guard, rate limit and Celery broker) is flushed;
  2. captures the SQL of one POST for a new customer and one for a known customer (in-process,
     same settings) and writes them as pgbench scripts (bench/sqlcapture.py);
  3. for each worker count: starts gunicorn (sync workers, or gthread ones with --threads; DEBUG
     off), pre-signs unique requests right before the load, warms up, then drives it with wrk at
     N connections (bench/wrk_replay.lua), reading the workers' CPU time from /proc before and
     after;
  4. runs pgbench with the captured statements, 8 clients, for the same duration, mixing the
     new- and known-customer scripts in the proportion the HTTP run had: the ceiling;
  5. prints req/s, p50, p99, non-2xx, pgbench tps, the ratio, CPU per request.
With --slices K, steps 3 and 4 alternate: K rounds of duration/K seconds of HTTP load then
duration/K seconds of pgbench (its known customers then come from a pool of their own), added up
into one ratio, so that a drift in the machine's speed reaches both sides of it.
No Celery worker runs: the payout tasks the requests enqueue just accumulate in Redis.
Exits non-zero when the load produced errors (non-2xx, socket errors, exhausted requests) or
pgbench failed; missing the target is a measurement, not an error.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUT = BENCH / "out"
# gunicorn and py-spy come from the virtualenv that runs this script (normally .venv), so that
# running it with another venv's python measures that interpreter; the project's .venv otherwise.
VENV_BIN = Path(sys.prefix) / "bin" if sys.prefix != sys.base_prefix else ROOT / ".venv" / "bin"
PATH = "/api/v1/cashbacks"
TARGET_RATIO = 0.30
TARGET_P99_MS = 100.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
SRC = ROOT  # the application code that runs: the working tree, or an export of --rev


def interpreter() -> str:
    """The Python that runs gunicorn, with how it was built: builds of one version differ in speed."""
    import sysconfig

    return f"{sys.executable} = {Path(sys.executable).resolve()}, {sys.version.split()[0]}, configured {sysconfig.get_config_var('CONFIG_ARGS') or '?'}"


def worker_kind(threads: int) -> str:
    return f"gthread, {threads} thread{'s' if threads > 1 else ''} each, keep-alive" if threads else "sync"


def log(msg: str) -> None:
    print(msg, flush=True)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=int, default=20, help="seconds of measured load, and of pgbench (default 20)")
    p.add_argument("--connections", type=int, default=16, help="concurrent wrk connections (default 16)")
    p.add_argument("--workers", default="3",
                   help="gunicorn sync workers; a comma list tries each (default 3: the best of 2,3,4,6 on the 2-CPU machine)")
    p.add_argument("--slices", type=int, default=1, metavar="K",
                   help="split each trial into K rounds of HTTP load then pgbench, duration/K each, added up (default 1: "
                        "all the HTTP load, then all of pgbench); on a machine whose speed drifts, both sides of the ratio "
                        "then see the same moments")
    p.add_argument("--threads", type=int, default=0,
                   help="the trials' gunicorn: gthread workers with this many threads each, connections kept alive "
                        "(default 0: sync workers, as the Procfile runs them); --profile and --cpu-probe always use sync workers")
    p.add_argument("--wrk-threads", type=int, default=2, help="wrk threads (default 2)")
    p.add_argument("--warmup", type=int, default=5, help="seconds of warm-up load before each measurement (default 5)")
    p.add_argument("--pgbench-clients", type=int, default=8, help="pgbench clients for the ceiling (default 8)")
    p.add_argument("--customers", type=int, default=5000, help="distinct MSISDNs in the load (default 5000)")
    p.add_argument("--expected-rate", type=int, default=600, help="req/s to pre-sign for (x2 margin; default 600)")
    p.add_argument("--database", default="cezbek_bench", help="scratch database, dropped and recreated")
    p.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server URL (no database)")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/14", help="Redis URL of a DB number to flush and use")
    p.add_argument("--profile", type=int, default=0, metavar="SECONDS",
                   help="after the measurements, sample the workers with py-spy under load for SECONDS (needs py-spy)")
    p.add_argument("--cpu-probe", type=int, default=0, metavar="SECONDS",
                   help="after the measurements, load a probed gunicorn for SECONDS and report the workers' thread CPU "
                        "per function (bench/cpu_probe.py)")
    p.add_argument("--access-log", action="store_true", help="gunicorn access log on (to its log file), as the Procfile runs it")
    p.add_argument("--rev", default=None,
                   help="run the application code of this git revision (exported to bench/out/src-<sha>) "
                        "instead of the working tree, e.g. --rev HEAD while others edit the tree")
    p.add_argument("--wait-quiet", type=int, default=0, metavar="SECONDS",
                   help="before each measurement, wait up to SECONDS for the machine to be idle (other processes "
                        "below 0.15 CPU for 3 s in a row); the machine is shared, the output shows the noise either way")
    p.add_argument("--inprocess", type=int, default=300, metavar="N",
                   help="also time N requests run one at a time in-process (Django test client), 0 to skip (default 300)")
    p.add_argument("--cprofile", action="store_true", help="with --inprocess: cProfile those requests to bench/out/")
    p.add_argument("--profile-workers", type=int, default=0, help="gunicorn workers for --profile (default: the first of --workers)")
    p.add_argument("--seed", type=int, default=1, help="random seed for the request mix")
    return p.parse_args()


# --- environment --------------------------------------------------------------------------------


def bench_env(args, database_url: str) -> dict:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="cezbek.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="bench-only-not-a-secret-" + "x" * 40,
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DJANGO_SECURE_SSL_REDIRECT="0",
        CEZBEK_LOG_LEVEL="WARNING",
        CEZBEK_VAR_DIR=str(OUT / "var"),
        CEZBEK_CACHE_PREFIX="cezbek-bench",
        DATABASE_URL=database_url,
        REDIS_URL=args.redis,
        CELERY_BROKER_URL=args.redis,
        CELERY_TASK_ALWAYS_EAGER="0",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.pop("GUNICORN_CMD_ARGS", None)
    return env


def find_pgbench() -> str:
    found = shutil.which("pgbench") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"), reverse=True)), None)
    if not found:
        sys.exit("pgbench not found (Debian: apt-get install postgresql-client-15, or postgresql-15)")
    return found


def require_tools() -> tuple[str, str]:
    wrk = shutil.which("wrk")
    if not wrk:
        sys.exit("wrk not found: apt-get install wrk")
    return wrk, find_pgbench()


def select_source(rev: str | None) -> str:
    """Points SRC at the code to run; returns a description (commit, dirty or not) for the output."""
    global SRC
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", rev or "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    if rev is None:
        dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
        return f"working tree of {ROOT} at {head[:12]}" + (" with uncommitted changes" if dirty else "")
    dest = OUT / f"src-{head[:12]}"
    if not dest.exists():
        tmp = OUT / f"src-{head[:12]}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        archive = subprocess.Popen([*git, "archive", head], stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(tmp)], stdin=archive.stdout, check=True)
        if archive.wait() != 0:
            sys.exit(f"git archive {head} failed")
        tmp.rename(dest)
    (dest / "staticfiles").mkdir(exist_ok=True)  # WhiteNoise warns when STATIC_ROOT is missing
    SRC = dest
    return f"git revision {head[:12]} ({rev}), exported to {dest}"


def recreate_database(args) -> None:
    import psycopg

    with psycopg.connect(f"{args.pg}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{args.database}"')


def flush_redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


# --- Django-side setup (in this process) ---------------------------------------------------------


def configure() -> tuple[str, str]:
    """Wallets, the ladder with rewards, two cashback rules, one partner: returns (key_id, secret)."""
    from datetime import timedelta

    from django.utils import timezone as djtz

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
    partner = Partner.objects.create(code="BENCH", name="Bench partner", rate_limit_per_minute=100_000_000)
    since = djtz.now() - timedelta(days=1)
    CashbackRule.objects.create(name="Everything 1%", min_quantity=1, min_amount=Decimal("0"), percentage=Decimal("1.00"), valid_from=since)
    CashbackRule.objects.create(
        name="Bench big baskets 2%", partner=partner, min_quantity=2, min_amount=Decimal("500000.00"),
        percentage=Decimal("2.00"), max_cashback=Decimal("25000.00"), valid_from=since,
    )
    credential = credential_issue(partner=partner)
    return credential.key_id, credential.secret


# --- requests -----------------------------------------------------------------------------------

WALLETS = ["LSAJA", "GPAID", "JOSVO", "lsaja"]


def msisdn_of(pool_base: int, i: int) -> str:
    return f"628{pool_base + i}"


def purchase(rng: random.Random, ref: str, pool_base: int, customers: int) -> dict:
    body = {
        "partner_ref": ref,
        "msisdn": msisdn_of(pool_base, rng.randrange(customers)),
        "quantity": rng.choice([1, 1, 1, 2, 2, 3, 5]),
        "amount": f"{rng.randrange(1_000_000, 300_000_000) / 100:.2f}",
        "wallet": rng.choice(WALLETS),
    }
    if rng.random() < 0.5:
        body["email"] = f"c{rng.randrange(10**6)}@example.id"
    return body


def write_requests(path: Path, count: int, *, secret: str, rng, prefix: str, pool_base: int, customers: int) -> None:
    """count signed requests, one a line: timestamp TAB signature TAB body (signed now)."""
    from partners.signing import sign

    ts = str(int(time.time()))
    with path.open("w") as fh:
        for n in range(count):
            body = json.dumps(purchase(rng, f"{prefix}-{n}", pool_base, customers), separators=(",", ":"))
            sig = sign(secret=secret, method="POST", path=PATH, timestamp=ts, body=body.encode())
            fh.write(f"{ts}\t{sig}\t{body}\n")


def signed_post(port: int, key_id: str, secret: str, payload: dict) -> tuple[int, bytes]:
    from partners.signing import signed_headers

    body = json.dumps(payload).encode()
    headers = signed_headers(key_id=key_id, secret=secret, method="POST", path=PATH, body=body, timestamp=int(time.time()))
    req = urllib.request.Request(f"http://127.0.0.1:{port}{PATH}", data=body, method="POST",
                                 headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# --- processes and CPU ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu_ticks(pid: int, split: bool = False):
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return (0, 0) if split else 0
    if split:
        return int(fields[11]), int(fields[12])  # utime, stime
    return int(fields[11]) + int(fields[12])


def children_of(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if ppid == pid:
            kids.append(int(entry.name))
    return kids


def _proc_titles() -> dict[int, str]:
    titles = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                titles[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                pass
    return titles


def db_backends(database: str, titles: dict[int, str] | None = None) -> list[int]:
    """PostgreSQL backends connected to the bench database, autovacuum on it included (process titles)."""
    titles = _proc_titles() if titles is None else titles
    return [pid for pid, t in titles.items() if t.startswith("postgres: ") and (f" {database} " in t or t.endswith(f" {database}"))]


def pg_background(titles: dict[int, str]) -> list[int]:
    """The server's own processes (WAL writer, checkpointer, background writer, launchers, postmaster)."""
    return [pid for pid, t in titles.items() if (t.startswith("postgres: ") and t.count(" ") <= 4 and "autovacuum worker" not in t)
            or "/postgres -D" in t or t.startswith("/usr/lib/postgresql/")]


def redis_servers(titles: dict[int, str]) -> list[int]:
    return [pid for pid, t in titles.items() if t.startswith("redis-server") or "/redis-server" in t.split(" ")[0]]


def machine_ticks() -> tuple[int, int]:
    """(busy, steal) ticks of the whole machine: busy is user+nice+system+irq+softirq."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return f[0] + f[1] + f[2] + f[5] + f[6], f[7]


def machine_busy_ticks() -> int:
    return machine_ticks()[0]


def wait_quiet(limit_s: int, threshold_cpus: float = 0.15) -> float:
    """Waits (up to limit_s) until the machine's busy CPU stays below threshold for 3 s; returns the last level."""
    deadline, quiet_for, level = time.monotonic() + limit_s, 0, 0.0
    while True:
        b0, t0 = machine_busy_ticks(), time.monotonic()
        time.sleep(1)
        level = (machine_busy_ticks() - b0) / CLK_TCK / (time.monotonic() - t0)
        quiet_for = quiet_for + 1 if level < threshold_cpus else 0
        if quiet_for >= 3 or time.monotonic() >= deadline:
            return level


class CpuAccount(threading.Thread):
    """CPU seconds by group of processes over a measurement, and what the rest of the machine used.

    Groups are functions titles -> pids. Polls the known pids every 50 ms and re-lists the groups
    every 0.5 s, so short-lived processes (pgbench's backends) are counted too: a process first
    seen after the start counts from 0; at most the last 50 ms of one that exits is missed.
    The load generator (wrk or pgbench) is counted exactly from this process's waited children.
    "other" is the machine's busy time minus all of that: processes that are not part of the bench
    (the machine is shared); steal is reported on its own."""

    def __init__(self, groups: dict):
        super().__init__(daemon=True)
        self.groups, self.stopping = groups, threading.Event()
        self.first: dict[int, int] = {}
        self.last: dict[int, int] = {}
        self.first_user: dict[int, int] = {}
        self.last_user: dict[int, int] = {}
        self.group_of: dict[int, str] = {}
        self._relist(initial=True)
        self.t0_busy, self.t0_steal = machine_ticks()
        self.t0_children = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.t0_self = resource.getrusage(resource.RUSAGE_SELF)
        self.t0 = time.monotonic()
        self.start()

    def _relist(self, initial=False) -> None:
        titles = _proc_titles()
        for name, lister in self.groups.items():
            for pid in lister(titles):
                if pid not in self.group_of:
                    self.group_of[pid] = name
                    self.first[pid] = proc_cpu_ticks(pid) if initial else 0
                    self.first_user[pid] = proc_cpu_ticks(pid, split=True)[0] if initial else 0

    def _poll(self) -> None:
        for pid in list(self.first):
            utime, stime = proc_cpu_ticks(pid, split=True)
            if utime or stime:
                self.last[pid], self.last_user[pid] = utime + stime, utime

    def run(self) -> None:
        relist = time.monotonic() + 0.5
        while not self.stopping.wait(0.05):
            if time.monotonic() >= relist:
                self._relist()
                relist = time.monotonic() + 0.5
            for pid in self.first:
                ticks = proc_cpu_ticks(pid)
                if ticks:
                    self.last[pid] = ticks

    def stop(self, load_generator: str) -> dict:
        self.stopping.set()
        self.join()
        self._poll()
        busy, steal = machine_ticks()
        ch, me = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
        out = {name: 0.0 for name in self.groups}
        for pid, base in self.first.items():
            if pid in self.last:
                out[self.group_of[pid]] += (self.last[pid] - base) / CLK_TCK
        user = {name: 0.0 for name in self.groups}
        for pid, base_user in self.first_user.items():
            if pid in self.last_user:
                user[self.group_of[pid]] += (self.last_user[pid] - base_user) / CLK_TCK
        self.user_seconds = user
        out[load_generator] = (ch.ru_utime + ch.ru_stime) - (self.t0_children.ru_utime + self.t0_children.ru_stime)
        out["bench process"] = (me.ru_utime + me.ru_stime) - (self.t0_self.ru_utime + self.t0_self.ru_stime)
        out["machine busy"] = (busy - self.t0_busy) / CLK_TCK
        out["other"] = max(0.0, out["machine busy"] - sum(v for k, v in out.items() if k != "machine busy"))
        out["steal"] = (steal - self.t0_steal) / CLK_TCK
        out["wall"] = time.monotonic() - self.t0
        return out


def cpu_line(cpu: dict, per: int, unit: str) -> str:
    parts = [f"{k} {1000 * v / max(per, 1):.2f}" for k, v in cpu.items() if k not in ("machine busy", "other", "steal", "wall")]
    return (f"CPU ms/{unit}: " + ", ".join(parts) + f"; machine busy {cpu['machine busy']:.1f} of "
            f"{(os.cpu_count() or 1) * cpu['wall']:.1f} CPU-s, other processes {cpu['other']:.1f} CPU-s, steal {cpu['steal']:.1f}")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


class Gunicorn:
    def __init__(self, workers: int, env: dict, logfile: Path, access_log: bool = False, app: str = "cezbek.wsgi",
                 threads: int = 0):
        self.workers, self.port = workers, free_port()
        # threads 0: sync workers (one request at a time, the connection closed after each); else
        # gthread workers with that many threads, keeping connections open between requests.
        worker_class = ["--worker-class", "gthread", "--threads", str(threads)] if threads else ["--worker-class", "sync"]
        self.log = logfile.open("w")
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "gunicorn"), app, "--config", str(BENCH / "gunicorn_bench.conf.py"),
             *worker_class, "--workers", str(workers), "--bind", f"127.0.0.1:{self.port}",
             *(["--access-logfile", "-"] if access_log else [])],
            cwd=SRC, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_ready(self, timeout=30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}; see {self.log.name}")
            if len(self.worker_pids()) >= self.workers:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return
                except OSError:
                    pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn not ready after {timeout}s; see {self.log.name}")

    def worker_pids(self) -> list[int]:
        return children_of(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            workers = self.worker_pids()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            time.sleep(0.2)
            for pid in workers:  # a worker that outlived its master: end it by its pid
                if Path(f"/proc/{pid}").exists():
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            time.sleep(0.2)
            left = [pid for pid in [self.proc.pid, *workers] if _alive(pid)]
            if left:
                log(f"  WARNING: gunicorn processes still running after stop: {left}")
        self.log.close()


# --- wrk and pgbench ------------------------------------------------------------------------------


def run_wrk(wrk: str, *, port: int, seconds: float, connections: int, threads: int, requests_file: Path, key_id: str) -> dict:
    cmd = [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s", "--timeout", "10s",
           "-s", str(BENCH / "wrk_replay.lua"), f"http://127.0.0.1:{port}", "--", str(requests_file), key_id, str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.stderr.strip():
        log("  wrk stderr: " + proc.stderr.strip().replace("\n", "\n  wrk stderr: "))
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRK_RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    result = json.loads(line[len("WRK_RESULT "):])
    result["stdout"] = proc.stdout
    return result


def run_pgbench(pgbench: str, args, scripts: list[tuple[Path, int]], env: dict, seconds: float | None = None) -> dict:
    cmd = [pgbench, "-n", "-M", "simple", "-c", str(args.pgbench_clients), "-j", str(min(args.pgbench_clients, os.cpu_count() or 1)),
           "-T", str(max(1, round(seconds or args.duration))), "-h", "127.0.0.1", "-U", "postgres"]
    for path, weight in scripts:
        cmd += ["-f", f"{path}@{max(weight, 1)}"]
    cmd.append(args.database)
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**env, "PGOPTIONS": ""})
    out = proc.stdout + proc.stderr
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    failed = re.search(r"number of failed transactions: (\d+)", out)
    lat = re.search(r"latency average = ([\d.]+) ms", out)
    processed = re.search(r"number of transactions actually processed: (\d+)", out)
    ok = proc.returncode == 0 and tps is not None and (failed is None or int(failed.group(1)) == 0)
    return {
        "ok": ok, "returncode": proc.returncode, "tps": float(tps.group(1)) if tps else 0.0,
        "latency_ms": float(lat.group(1)) if lat else None, "transactions": int(processed.group(1)) if processed else 0,
        "failed": int(failed.group(1)) if failed else None, "command": " ".join(cmd), "output": out,
    }


def ensure_pool_states(database_url: str, pool_base: int, customers: int) -> None:
    """The known-customer pgbench script picks any pool MSISDN: make sure each has a loyalty state.

    Runs after the HTTP measurement (it does not change what was measured)."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO loyalty_loyaltystate (partner_id, msisdn, tier_id, count, entered_at, expires_at, updated_at)
            SELECT p.id, '628' || (%s + g)::text, t.id, 0, now(), NULL, now()
            FROM generate_series(0, %s - 1) g, partners_partner p, loyalty_tierlevel t
            WHERE p.code = 'BENCH' AND t.rank = 1 AND NOT t.archived
            ON CONFLICT DO NOTHING
            """,
            [pool_base, customers],
        )


def pool_counts(database_url: str, pool_base: int, customers: int) -> tuple[int, int]:
    """(loyalty states, transactions) of the trial's customer pool."""
    import psycopg

    lo, hi = msisdn_of(pool_base, 0), msisdn_of(pool_base, customers - 1)
    with psycopg.connect(database_url) as conn:
        states = conn.execute("SELECT count(*) FROM loyalty_loyaltystate WHERE msisdn BETWEEN %s AND %s", [lo, hi]).fetchone()[0]
        txns = conn.execute("SELECT count(*) FROM cashback_transaction WHERE msisdn BETWEEN %s AND %s", [lo, hi]).fetchone()[0]
    return states, txns


def queued_tasks(url: str) -> int:
    import redis

    r = redis.Redis.from_url(url)
    return sum(r.llen(k) for k in r.keys("celery*") if r.type(k) == b"list")


# --- one trial -----------------------------------------------------------------------------------


def service_groups(args, g) -> dict:
    groups = {}
    if g is not None:
        groups["gunicorn workers"] = lambda titles: g.worker_pids()
        groups["gunicorn master"] = lambda titles: [g.proc.pid]
    groups["PostgreSQL backends"] = lambda titles: db_backends(args.database, titles)
    groups["PostgreSQL background"] = pg_background
    groups["Redis"] = redis_servers
    return groups


def trial(n: int, workers: int, args, ctx: dict) -> dict:
    """One trial: the HTTP load, then pgbench with the same statements. With --slices K, K rounds of
    an HTTP slice followed by a pgbench slice, each duration/K long, added up: both sides then see
    the same moments of a machine whose speed drifts."""
    env, key_id, secret = ctx["env"], ctx["key_id"], ctx["secret"]
    pool_base = 1_100_000_000 + n * 1_000_000
    # With slices, pgbench's known customers are a pool of their own: states created for it before
    # an HTTP slice would turn the HTTP load's new customers into known ones.
    pg_pool_base = pool_base + 500_000 if args.slices > 1 else pool_base
    slice_s = args.duration / args.slices
    rng = random.Random(args.seed * 1000 + n)
    log(f"\n== gunicorn -w {workers} ({worker_kind(args.threads)}), wrk -c {args.connections} -t {args.wrk_threads}, {args.duration}s "
        f"(+{args.warmup}s warm-up)" + (f" in {args.slices} slices of {slice_s:g}s, each followed by {slice_s:g}s of pgbench"
                                         if args.slices > 1 else "")
        + f"; customers {msisdn_of(pool_base, 0)}..{msisdn_of(pool_base, args.customers - 1)}")
    g = Gunicorn(workers, env, OUT / f"gunicorn-t{n}-w{workers}.log", access_log=args.access_log, threads=args.threads)
    slices = []
    try:
        g.wait_ready()
        if args.wait_quiet:
            level = wait_quiet(args.wait_quiet)
            log(f"  machine busy before the load: {level:.2f} CPUs (waited up to {args.wait_quiet}s for < 0.15)")
        status, body = signed_post(g.port, key_id, secret, {
            "partner_ref": f"{ctx['run_id']}-t{n}-sanity", "msisdn": msisdn_of(pool_base, 0), "quantity": 1,
            "amount": "10000.00", "wallet": "LSAJA"})
        if status != 201:
            raise RuntimeError(f"sanity request answered {status}: {body[:300]!r}")
        if args.slices > 1:
            ensure_pool_states(ctx["database_url"], pg_pool_base, args.customers)
        warm_file = OUT / f"requests-t{n}-warmup.tsv"
        # Signed right before the load: timestamps must be within 300 s of the server's clock.
        write_requests(warm_file, max(args.warmup, 1) * args.expected_rate * 2, secret=secret, rng=rng,
                       prefix=f"{ctx['run_id']}-t{n}-w", pool_base=pool_base, customers=args.customers)
        load_files = []
        for k in range(args.slices):
            load_files.append(OUT / (f"requests-t{n}.tsv" if args.slices == 1 else f"requests-t{n}-s{k}.tsv"))
            write_requests(load_files[-1], int(slice_s * args.expected_rate * 2) + 1, secret=secret, rng=rng,
                           prefix=f"{ctx['run_id']}-t{n}" + (f"-s{k}" if args.slices > 1 else ""), pool_base=pool_base,
                           customers=args.customers)
        wrk_args = dict(port=g.port, connections=args.connections, threads=args.wrk_threads, key_id=key_id)
        if args.warmup > 0:
            warm = run_wrk(ctx["wrk"], seconds=args.warmup, requests_file=warm_file, **wrk_args)
            warm_errors = warm["non2xx"] + warm["exhausted"] + sum(warm["errors"][k] for k in ("connect", "read", "write", "timeout"))
            log(f"  warm-up: {warm['requests']} requests, errors {warm_errors}")
        else:
            warm_errors = 0
        worker_pids_start = sorted(g.worker_pids())
        for k, load_file in enumerate(load_files):
            http = http_slice(g, args, ctx, load_file, slice_s, wrk_args, pool_base)
            if k == 0:
                http["errors"] += warm_errors
            pg = pg_slice(args, ctx, n, k, slice_s, http, pg_pool_base) if args.slices > 1 else None
            slices.append((http, pg))
        worker_pids_end = sorted(g.worker_pids())
        if worker_pids_end != worker_pids_start:
            log(f"  WARNING: gunicorn workers changed during the measurement ({worker_pids_start} -> {worker_pids_end}); "
                f"see {g.log.name}")
    finally:
        g.stop()
    if args.slices == 1:  # the ceiling after the HTTP load, on its customers (their states created now)
        http = slices[0][0]
        slices = [(http, pg_slice(args, ctx, n, 0, slice_s, http, pool_base))]
    http, pg = _added(slices, workers)
    ratio = http["rps"] / pg["tps"] if pg["tps"] else 0.0
    if args.slices > 1:
        log(f"  all {args.slices} slices: HTTP {http['rps']:.1f} req/s ({http['requests']} requests), p99 {http['p99_ms']:.1f} ms "
            f"(the worst slice's), worker CPU {http['worker_cpu_ms_per_request']:.2f} ms/request; pgbench {pg['tps']:.1f} tps")
    log(f"  ratio: {ratio:.3f} of the ceiling (target >= {TARGET_RATIO:.2f} with p99 < {TARGET_P99_MS:.0f} ms)")
    return {"http": http, "pgbench": {k: v for k, v in pg.items() if k != "output"}, "ratio": ratio,
            "slices": [{"http": h, "pgbench": {k: v for k, v in p.items() if k != "output"}} for h, p in slices] if args.slices > 1 else None}


def http_slice(g, args, ctx: dict, load_file: Path, seconds: float, wrk_args: dict, pool_base: int) -> dict:
    """wrk for `seconds` on the running gunicorn, with the CPU of every process involved."""
    states_before, txns_before = pool_counts(ctx["database_url"], pool_base, args.customers)
    account = CpuAccount(service_groups(args, g))
    result = run_wrk(ctx["wrk"], seconds=seconds, requests_file=load_file, **wrk_args)
    cpu = account.stop("wrk")
    worker_user_s = account.user_seconds["gunicorn workers"]
    time.sleep(1)  # requests still in flight when wrk stopped complete on the server
    states_after, txns_after = pool_counts(ctx["database_url"], pool_base, args.customers)
    requests = result["requests"]
    seconds = result["duration_us"] / 1e6
    # The mix of the measured window, from the database (wrk's count misses the in-flight tail).
    new_customers, stored = states_after - states_before, txns_after - txns_before
    errors = result["non2xx"] + result["exhausted"] + sum(result["errors"][k] for k in ("connect", "read", "write", "timeout"))
    http = {
        "requests": requests, "rps": requests / seconds, "seconds": seconds,
        "p50_ms": result["latency_us"]["p50"] / 1000, "p90_ms": result["latency_us"]["p90"] / 1000,
        "p99_ms": result["latency_us"]["p99"] / 1000, "mean_ms": result["latency_us"]["mean"] / 1000,
        "max_ms": result["latency_us"]["max"] / 1000,
        "non2xx": result["non2xx"], "statuses": result["statuses"], "exhausted": result["exhausted"],
        "socket_errors": result["errors"], "errors": errors, "available": result["available"],
        "new_customers": new_customers, "known_customers": max(stored - new_customers, 0), "stored": stored,
        "worker_cpu_ms_per_request": 1000 * cpu["gunicorn workers"] / max(requests, 1),
        "db_cpu_ms_per_request": 1000 * cpu["PostgreSQL backends"] / max(requests, 1),
        "worker_user_ms_per_request": 1000 * worker_user_s / max(requests, 1),
        "cpu_seconds": cpu, "other_cpu_s": cpu["other"], "worker_processes": len(g.worker_pids()),
    }
    log(f"  HTTP: {http['rps']:.1f} req/s, p50 {http['p50_ms']:.1f} ms, p99 {http['p99_ms']:.1f} ms, "
        f"{requests} requests (stored {stored}, of which {new_customers} new customers), non-2xx {http['non2xx']}, socket errors "
        f"{sum(result['errors'][k] for k in ('connect', 'read', 'write', 'timeout'))}, exhausted {http['exhausted']}")
    log("  " + cpu_line(cpu, requests, "request"))
    log(f"  gunicorn workers: {http['worker_user_ms_per_request']:.2f} ms user + "
        f"{http['worker_cpu_ms_per_request'] - http['worker_user_ms_per_request']:.2f} ms system per request")
    return http


def pg_slice(args, ctx: dict, n: int, k: int, seconds: float, http: dict, pool_base: int) -> dict:
    """pgbench for `seconds`: the same statements, in the proportion of new and known customers
    the HTTP slice `http` had; known customers from `pool_base`'s pool (states created first)."""
    if args.slices == 1:
        ensure_pool_states(ctx["database_url"], pool_base, args.customers)
    scripts = [
        (ctx["script_new"], http["new_customers"]),
        (write_known_script(ctx, pool_base, args.customers, n), http["known_customers"]),
    ]
    if args.wait_quiet and args.slices == 1:
        level = wait_quiet(args.wait_quiet)
        log(f"  machine busy before pgbench: {level:.2f} CPUs")
    account = CpuAccount(service_groups(args, None))
    pg = run_pgbench(ctx["pgbench"], args, scripts, ctx["env"], seconds=seconds)
    pg_cpu = account.stop("pgbench")
    pg["db_cpu_ms_per_txn"] = 1000 * pg_cpu["PostgreSQL backends"] / max(pg["transactions"], 1)
    pg["cpu_seconds"], pg["other_cpu_s"] = pg_cpu, pg_cpu["other"]
    pg["weights"] = {p.name: w for p, w in scripts}
    (OUT / (f"pgbench-t{n}.log" if args.slices == 1 else f"pgbench-t{n}-s{k}.log")).write_text(pg["command"] + "\n\n" + pg["output"])
    if not pg["ok"]:
        log(pg["output"])
    log(f"  pgbench: {pg['tps']:.1f} tps ({args.pgbench_clients} clients, latency {pg['latency_ms']} ms, "
        f"failed {pg['failed']}); scripts {', '.join(f'{p.name}@{max(w, 1)}' for p, w in scripts)}")
    log("  " + cpu_line(pg_cpu, pg["transactions"], "transaction"))
    return pg


def _added(slices: list[tuple[dict, dict]], workers: int) -> tuple[dict, dict]:
    """The slices of a trial as one measurement: rates over the summed time, CPU over the summed
    requests and transactions; latency percentiles are the worst slice's (they do not add up)."""
    if len(slices) == 1:
        http, pg = slices[0]
        return {**http, "workers": workers}, pg
    https, pgs = [h for h, _ in slices], [p for _, p in slices]
    requests, seconds = sum(h["requests"] for h in https), sum(h["seconds"] for h in https)
    cpu = {key: sum(h["cpu_seconds"][key] for h in https) for key in https[0]["cpu_seconds"]}
    worker_user = sum(h["worker_user_ms_per_request"] * h["requests"] for h in https) / 1000
    http = {
        "workers": workers, "requests": requests, "rps": requests / seconds, "seconds": seconds,
        **{key: max(h[key] for h in https) for key in ("p50_ms", "p90_ms", "p99_ms", "max_ms")},
        "mean_ms": sum(h["mean_ms"] * h["requests"] for h in https) / max(requests, 1),
        **{key: sum(h[key] for h in https) for key in ("non2xx", "exhausted", "errors", "new_customers", "known_customers", "stored")},
        "worker_cpu_ms_per_request": 1000 * cpu["gunicorn workers"] / max(requests, 1),
        "db_cpu_ms_per_request": 1000 * cpu["PostgreSQL backends"] / max(requests, 1),
        "worker_user_ms_per_request": 1000 * worker_user / max(requests, 1),
        "cpu_seconds": cpu, "other_cpu_s": cpu["other"], "worker_processes": https[-1]["worker_processes"],
    }
    transactions = sum(p["transactions"] for p in pgs)
    pg_seconds = sum(p["transactions"] / p["tps"] for p in pgs if p["tps"])
    pg_cpu = {key: sum(p["cpu_seconds"][key] for p in pgs) for key in pgs[0]["cpu_seconds"]}
    pg = {
        "ok": all(p["ok"] for p in pgs), "tps": transactions / pg_seconds if pg_seconds else 0.0, "transactions": transactions,
        "latency_ms": sum((p["latency_ms"] or 0) * p["transactions"] for p in pgs) / max(transactions, 1),
        "failed": sum(p["failed"] or 0 for p in pgs), "command": pgs[0]["command"],
        "db_cpu_ms_per_txn": 1000 * pg_cpu["PostgreSQL backends"] / max(transactions, 1),
        "cpu_seconds": pg_cpu, "other_cpu_s": pg_cpu["other"],
    }
    return http, pg


def write_known_script(ctx, pool_base: int, customers: int, n: int) -> Path:
    path = OUT / f"pgbench_cashbacks_known_t{n}.sql"
    text = ctx["script_known_template"].replace("__POOL_LO__", str(pool_base)).replace("__POOL_HI__", str(pool_base + customers - 1))
    path.write_text(text)
    return path


# --- main ----------------------------------------------------------------------------------------


def main() -> int:
    args = parse_args()
    worker_counts = [int(w) for w in str(args.workers).split(",") if w.strip()]
    wrk, pgbench = require_tools()
    OUT.mkdir(parents=True, exist_ok=True)
    database_url = f"{args.pg}/{args.database}"
    env = bench_env(args, database_url)
    os.environ.update(env)
    code = select_source(args.rev)
    log(f"interpreter: {interpreter()}")
    sys.path.insert(0, str(SRC))
    os.chdir(SRC)  # Celery's loader puts the working directory first on sys.path
    started = datetime.now(timezone.utc)
    run_id = "b" + started.strftime("%Y%m%d%H%M%S")

    log(f"bench: {started:%Y-%m-%d %H:%M:%S} UTC, {os.cpu_count()} CPUs, database {args.database} (recreated), "
        f"Redis {args.redis} (flushed)")
    log(f"code: {code}")
    recreate_database(args)
    flush_redis(args.redis)

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections

    import cezbek

    if Path(cezbek.__file__).resolve().parent.parent != SRC.resolve():
        sys.exit(f"imported the application from {cezbek.__file__}, expected {SRC}")
    call_command("migrate", verbosity=0)
    key_id, secret = configure()

    import sqlcapture  # noqa: E402  (bench/ is on sys.path as the script's directory)

    # Warm the in-process path once, then capture a new customer's and a known customer's POST.
    warm = {"partner_ref": f"{run_id}-capture-warm", "msisdn": "6281999000001", "quantity": 2, "amount": "750000.00", "wallet": "LSAJA"}
    sqlcapture.capture_post(label="warm", key_id=key_id, secret=secret, payload=warm)
    first_ids = sqlcapture.move_sequences_to_distinct_ids()
    capture_msisdn = "6281999000002"
    new = sqlcapture.capture_post(label="new customer", key_id=key_id, secret=secret, payload={
        "partner_ref": f"{run_id}-capture-1", "msisdn": capture_msisdn, "email": "a@b.id", "quantity": 2,
        "amount": "750000.00", "wallet": "LSAJA"})
    known = sqlcapture.capture_post(label="known customer", key_id=key_id, secret=secret, payload={
        "partner_ref": f"{run_id}-capture-2", "msisdn": capture_msisdn, "email": "a@b.id", "quantity": 2,
        "amount": "750000.00", "wallet": "LSAJA"})
    for cap in (new, known):
        log(sqlcapture.describe(cap))
    common = [
        "-- Generated by bench/api_cashbacks.py from the SQL one POST /api/v1/cashbacks executed",
        "-- (bench/sqlcapture.py). Redis-only work (replay guard, rate limit, Celery enqueue) is not SQL.",
        "\\set ref random(1, 9000000000000000000)",
        "\\set kzref random(1, 9000000000000000000)",
    ]
    script_new = OUT / "pgbench_cashbacks_new.sql"
    script_new.write_text(sqlcapture.pgbench_script(
        new, first_ids=first_ids, msisdn_expr="'629:fresh'",
        header=["-- A new customer's purchase (loyalty state created).", *common, "\\set fresh random(1000000000, 9999999999)"]))
    script_known_template = sqlcapture.pgbench_script(
        known, first_ids=first_ids, msisdn_expr="'628:cust'",
        header=["-- A known customer's purchase (loyalty state updated).", *common, "\\set cust random(__POOL_LO__, __POOL_HI__)"])
    (OUT / "pgbench_cashbacks_known.sql.template").write_text(script_known_template)
    log(f"pgbench scripts: {script_new} and {OUT}/pgbench_cashbacks_known_t<N>.sql")
    inproc = None
    if args.inprocess:
        if args.wait_quiet:
            log(f"machine busy before the in-process requests: {wait_quiet(args.wait_quiet):.2f} CPUs")
        sqlcapture.inprocess_cost(key_id=key_id, secret=secret, count=50, msisdn_base=1_099_000_000, customers=1000,
                                  tag=f"{run_id}-warm")
        inproc = sqlcapture.inprocess_cost(
            key_id=key_id, secret=secret, count=args.inprocess, msisdn_base=1_099_000_000, customers=1000, tag=run_id,
            profile_to=OUT / f"cprofile-{run_id}.txt" if args.cprofile else None)
        log(f"in-process, one request at a time (Django test client, no gunicorn): {inproc['cpu_ms_per_request']:.2f} ms CPU, "
            f"{inproc['wall_ms_per_request']:.2f} ms wall per request over {inproc['requests']} requests"
            + (f"; cProfile: {OUT / f'cprofile-{run_id}.txt'}" if args.cprofile else ""))
    connections.close_all()

    ctx = dict(env=env, key_id=key_id, secret=secret, run_id=run_id, wrk=wrk, pgbench=pgbench, database_url=database_url,
               script_new=script_new, script_known_template=script_known_template)
    results = []
    failed = False
    for n, workers in enumerate(worker_counts):
        res = trial(n, workers, args, ctx)
        results.append(res)
        failed |= res["http"]["errors"] > 0 or not res["pgbench"]["ok"]

    profile = None
    if args.profile:
        import profile_workers

        profile = profile_workers.profile(bench=sys.modules[__name__], ctx=ctx, args=args,
                                          workers=args.profile_workers or (worker_counts or [3])[0], seconds=args.profile,
                                          trial_no=len(worker_counts))

    cpu_probe = None
    if args.cpu_probe:
        import cpu_probe as probe

        cpu_probe = probe.run(bench=sys.modules[__name__], ctx=ctx, args=args, workers=args.profile_workers or (worker_counts or [3])[0],
                              seconds=args.cpu_probe, trial_no=len(worker_counts) + 1)

    tasks = queued_tasks(args.redis)
    summary = {
        "started_utc": started.isoformat(timespec="seconds"), "code": code, "python": interpreter(), "cpus": os.cpu_count(), "args": vars(args),
        "sql_statements": {"new_customer": new.sql_count, "known_customer": known.sql_count},
        "queued_payout_tasks": tasks, "inprocess": inproc, "trials": results, "profile": profile, "cpu_probe": cpu_probe,
    }
    result_file = OUT / f"results-{run_id}.json"
    result_file.write_text(json.dumps(summary, indent=2, default=str))

    log(f"\n== summary (POST /api/v1/cashbacks, gunicorn {worker_kind(args.threads)} workers, DEBUG off, PostgreSQL + Redis on this machine)")
    log(f"{'workers':>7} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'non-2xx':>7} {'pgbench tps':>11} {'ratio':>6} "
        f"{'worker CPU ms/req':>17} {'DB CPU ms/req':>13} {'other CPU-s (HTTP/pgbench)':>26}")
    for r in results:
        h, p = r["http"], r["pgbench"]
        log(f"{h['workers']:>7} {h['rps']:>8.1f} {h['p50_ms']:>7.1f} {h['p99_ms']:>7.1f} {h['non2xx']:>7} {p['tps']:>11.1f} "
            f"{r['ratio']:>6.3f} {h['worker_cpu_ms_per_request']:>17.2f} {h['db_cpu_ms_per_request']:>13.2f} "
            f"{h['other_cpu_s']:>17.1f} / {p['other_cpu_s']:.1f}" + ("  INVALID: errors" if h["errors"] else ""))
    for workers in sorted({r["http"]["workers"] for r in results}):
        same = [r for r in results if r["http"]["workers"] == workers]
        if len(same) > 1:
            # The machine's speed drifts between trials: one trial's ratio pairs an HTTP phase with the
            # pgbench phase right after it, and the median of several such pairs is the figure to quote.
            log(f"{workers:>7} median of {len(same)} trials: {statistics.median(r['http']['rps'] for r in same):.1f} req/s, "
                f"p99 {statistics.median(r['http']['p99_ms'] for r in same):.1f} ms, ratio {statistics.median(r['ratio'] for r in same):.3f}")
    log(f"target: ratio >= {TARGET_RATIO:.2f} and p99 < {TARGET_P99_MS:.0f} ms at {args.connections} connections "
        f"(a measurement: missing it does not fail the run)")
    log(f"no Celery worker ran: {tasks} payout tasks queued up in {args.redis} during the run (flushed now)")
    log(f"pgbench scripts: {script_new}, {OUT}/pgbench_cashbacks_known_t*.sql; results: {result_file}")
    flush_redis(args.redis)
    if failed:
        log("FAILED: the load produced errors (see above)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
