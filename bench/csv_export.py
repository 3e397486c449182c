#!/usr/bin/env python
"""CSV export of 1,000,000 transactions (and their payouts) through the admin vs `psql \\copy` (docs/benchmarks.md).

    .venv/bin/python bench/csv_export.py [--rows 1000000] [--repeat 3] [--wait-quiet 120]

One run:
  1. recreates the scratch database cezbek_bench_export on the local PostgreSQL (dropped at the end), migrates it, configures
     three partners, the wallets, two providers and a tier, and writes --rows transactions and a payout
     for 9 in 10 of them with INSERT … SELECT FROM generate_series (a minute or so for a million), then
     VACUUM ANALYZE;
  2. for each table (transactions, payouts), --repeat times, interleaved:
       - psql: `\\copy (SELECT …) TO FILE WITH (FORMAT csv, HEADER)`, where the SELECT is the one the admin's
         export runs for the same changelist (cezbek.exports.copy_select, parameters merged by psycopg),
         in the same time zone;
       - export (COPY path): a fresh Python process logs in as a superuser with Django's test client and
         GETs the changelist's /export/ URL, consuming the StreamingHttpResponse into a file;
       - export (iterator path, for comparison, --iterator-repeat times): the same with
         cezbek.exports.USE_COPY = False, the path SQLite takes (values_list().iterator() over a
         server-side cursor, csv.writer);
     each measured as wall time of the request (of the psql process), user+sys CPU and peak RSS of the process
     (os.wait4), the CPU of the request alone, and the CPU of the PostgreSQL backend serving it (sampled from
     /proc: on a busy shared machine wall time mostly measures the wait for a CPU, CPU does not);
     the export's rows are checked against psql's (the COPY path byte for byte, the iterator cell by cell);
  3. a filtered export (one month of the date hierarchy, ~1/12 of the rows) for the "flat memory" check,
     and the changelist page itself (plain, filtered, searched) on the large table;
  4. prints rows, seconds, rows/s, MB/s, peak MB and the ratios to psql in time and in CPU (medians), and writes
     bench/out/csv-export-<stamp>.json. Targets: within 2x of psql's time and under 200 MB resident.
The machine's load (loadavg, busy CPUs during each measurement) is printed beside every figure.
Exit status is non-zero only if something failed (an export's rows differ from psql's, a process failed);
missing a target is a measurement, not a failure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
TARGET_RATIO = 2.0
TARGET_RSS_MB = 200.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
TABLES = {
    "transactions": ("/admin/cashback/transaction/", "cashback.Transaction"),
    "payouts": ("/admin/wallets/payout/", "wallets.Payout"),
}


def log(msg: str) -> None:
    print(msg, flush=True)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="transactions to generate (default 1,000,000)")
    p.add_argument("--repeat", type=int, default=3, help="measurements of each kind, interleaved; medians are reported (default 3)")
    p.add_argument("--paths", default="copy,iterator", help="export paths to measure: copy, iterator or both (default both)")
    p.add_argument("--iterator-repeat", type=int, default=1,
                   help="measurements of the iterator path, in the first rounds (default 1: it takes ~10x as long)")
    p.add_argument("--tables", default="transactions,payouts", help="which exports (default both)")
    p.add_argument("--steps", default="exports,flat,changelists",
                   help="what to measure after the database: exports (step 2), flat (3, filtered export), changelists (3, pages)")
    p.add_argument("--database", default="cezbek_bench_export", help="scratch database, dropped and recreated")
    p.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server URL (no database)")
    p.add_argument("--reuse", action="store_true", help="use the database an earlier --keep-db run left, if it has --rows rows (skip step 1)")
    p.add_argument("--keep-db", action="store_true", help="leave the scratch database for a later --reuse (default: dropped at the end)")
    p.add_argument("--keep-files", action="store_true", help="keep the CSV files in bench/out/ (about 150 MB a million rows each)")
    p.add_argument("--wait-quiet", type=int, default=0, metavar="SECONDS",
                   help="before each measurement wait up to SECONDS for the machine to be idle (< 0.3 CPUs busy for 3 s)")
    p.add_argument("--child", choices=["setup", "select", "export", "changelist"], help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--iterator", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def bench_env(args) -> dict:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="cezbek.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="bench-only-not-a-secret-" + "x" * 40,
        DJANGO_ALLOWED_HOSTS="testserver",
        DJANGO_SECURE_SSL_REDIRECT="0",
        CEZBEK_LOG_LEVEL="WARNING",
        CEZBEK_VAR_DIR=str(OUT / "var"),
        DATABASE_URL=f"{args.pg}/{args.database}",
        PYTHONDONTWRITEBYTECODE="1",
    )
    for name in ["REDIS_URL", "CELERY_BROKER_URL"]:
        env.pop(name, None)  # the export needs neither: in-process cache
    return env


# --- the child processes (Django) ---------------------------------------------------------------------


def child_django():
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    import django

    django.setup()


def child_setup(args) -> None:
    """Configuration through the ORM, the million rows through SQL, then VACUUM ANALYZE."""
    child_django()
    from datetime import timedelta
    from decimal import Decimal

    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.utils import timezone as djtz

    from cashback.models import CashbackRule
    from loyalty.models import TierLevel
    from partners.models import Partner
    from wallets.models import Provider, Wallet

    wallets = [Wallet.objects.create(code=c, name=n).pk for c, n in [("LSAJA", "LinkSaja"), ("GPAID", "GoPaid"), ("JOSVO", "Josvo")]]
    providers = [
        Provider.objects.create(code=c, name=n, kind=Provider.Kind.AGGREGATOR, priority=p).pk
        for c, n, p in [("MTRANS", "Middletrans", 2), ("XENIT", "Xenit", 3)]
    ]
    partners = [Partner.objects.create(code=c, name=c.title()).pk for c in ["LAJADA", "TOKMED", "BLAPAK"]]
    tier = TierLevel.objects.create(name="BRONZE", rank=1, promote_after=None, validity_days=None).pk
    rule = CashbackRule.objects.create(
        name="Everything 1%", min_quantity=1, min_amount=Decimal("0"), percentage=Decimal("1.00"),
        valid_from=djtz.now() - timedelta(days=400),
    ).pk
    get_user_model().objects.create_superuser("bench", password=None)
    n = args.rows
    with connection.cursor() as cur:
        started = time.monotonic()
        # One purchase every 30 s over the last n × 30 s; 200,000 customers; amounts 10,000.00 … 5,009,999.99.
        cur.execute(
            """
            INSERT INTO cashback_transaction (kezbek_ref, partner_id, partner_ref, msisdn, email, quantity, amount,
                wallet_id, rule_id, cashback, reward, total, tier_id, tier_count, tier_expires_at, created_at)
            SELECT 'KZ' || lpad(i::text, 24, '0'), (%(partners)s::bigint[])[1 + i %% 3], 'INV/' || i,
                   '62812' || lpad((i %% 200000)::text, 8, '0'), CASE WHEN i %% 4 = 0 THEN 'c' || i || '@example.com' ELSE '' END,
                   1 + i %% 5, a.amount, (%(wallets)s::bigint[])[1 + i %% 3], CASE WHEN i %% 10 = 0 THEN NULL ELSE %(rule)s END,
                   a.cashback, a.reward, a.cashback + a.reward, %(tier)s, i %% 5, NULL,
                   now() - (%(n)s - i) * interval '30 seconds'
            FROM generate_series(1, %(n)s) AS i,
                 LATERAL (SELECT (10000 + (i::bigint * 7919) %% 5000000 + (i %% 100) / 100.0)::numeric(14, 2) AS amount) AS m,
                 LATERAL (SELECT m.amount,
                                 CASE WHEN i %% 10 = 0 THEN 0.00 ELSE round(m.amount / 100, 2) END::numeric(14, 2) AS cashback,
                                 CASE WHEN i %% 10 <> 0 AND i %% 5 = 4 THEN 5000.00 ELSE 0.00 END::numeric(14, 2) AS reward) AS a
            """,
            {"partners": partners, "wallets": wallets, "rule": rule, "tier": tier, "n": n},
        )
        log(f"  {n:,} transactions in {time.monotonic() - started:.1f} s")
        started = time.monotonic()
        cur.execute(
            """
            INSERT INTO wallets_payout (transaction_id, wallet_id, msisdn, amount, status, flags, provider_id, reference,
                provider_ref, fee, dearest_fee, lease, checks, next_check_at, retried_at, created_at, updated_at)
            SELECT t.id, t.wallet_id, t.msisdn, t.total,
                   (ARRAY['SUCCEEDED','SUCCEEDED','SUCCEEDED','SUCCEEDED','SUCCEEDED','SUCCEEDED','FAILED','PENDING','MANUAL_REVIEW','HELD'])[1 + t.id %% 10],
                   CASE WHEN t.id %% 10 = 9 THEN '["velocity"]'::jsonb ELSE '[]'::jsonb END,
                   (%(providers)s::bigint[])[1 + t.id %% 2],
                   t.kezbek_ref || '-' || (ARRAY['MTRANS','XENIT'])[1 + t.id %% 2],
                   CASE WHEN t.id %% 10 < 6 THEN 'P' || t.id ELSE '' END,
                   round(500 + t.total * 0.005, 2), 750.00, 1, t.id %% 3, NULL, NULL, t.created_at, t.created_at + interval '3 seconds'
            FROM cashback_transaction t WHERE t.total > 0
            """,
            {"providers": providers},
        )
        log(f"  {cur.rowcount:,} payouts in {time.monotonic() - started:.1f} s")
    connection.close()
    import psycopg

    started = time.monotonic()
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    log(f"  VACUUM ANALYZE in {time.monotonic() - started:.1f} s")


def _changelist_queryset(url: str):
    """The export's queryset for a changelist URL, as the admin builds it for a superuser."""
    from django.contrib import admin
    from django.contrib.auth import get_user_model
    from django.test import RequestFactory
    from django.urls import resolve

    request = RequestFactory().get(url)
    request.user = get_user_model().objects.get(username="bench")
    model_admin = resolve(request.path).func.model_admin
    assert isinstance(model_admin, admin.ModelAdmin)
    return model_admin, model_admin.get_changelist_instance(request).queryset


def child_select(args) -> None:
    """Prints the SELECT the export runs for the changelist at --url, with its parameters merged."""
    child_django()
    import psycopg
    from django.conf import settings

    from cezbek.exports import copy_select

    model_admin, queryset = _changelist_queryset(args.url)
    sql, params = copy_select(queryset=queryset, columns=model_admin.export_columns)
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        literal = psycopg.ClientCursor(conn).mogrify(sql, params)
    print(json.dumps({"select": literal, "time_zone": settings.TIME_ZONE, "header": [c.header for c in model_admin.export_columns]}))


def _vm(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def child_export(args) -> None:
    """GET the export URL through Django's whole stack (test client) and write the streamed body to --out."""
    child_django()
    from django.contrib.auth import get_user_model
    from django.test import Client

    from cezbek import exports

    if args.iterator:
        exports.USE_COPY = False
    client = Client()
    client.force_login(get_user_model().objects.get(username="bench"))
    # Warm, as a web worker that has served requests is: one export that matches nothing (header only),
    # so that the first request's lazy imports and URL resolver are not timed.
    warm = client.get(args.url + ("&" if "?" in args.url else "?") + "q=warm-up-matches-nothing", secure=True)
    assert b"".join(warm.streaming_content).count(b"\n") == 1
    before_mb = _vm("VmRSS")
    rows = size = blocks = 0
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    response = client.get(args.url, secure=True)
    assert response.status_code == 200 and response.streaming, (response.status_code, response.headers)
    with open(args.out, "wb") as out:
        for block in response.streaming_content:
            out.write(block)
            rows += block.count(b"\n")
            size += len(block)
            blocks += 1
    response.close()
    seconds = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    request_cpu = cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime
    print(json.dumps({
        "seconds": seconds, "request_cpu": request_cpu, "rows": rows - 1, "bytes": size, "blocks": blocks, "rss_before_mb": before_mb,
        "rss_end_mb": _vm("VmRSS"), "hwm_mb": _vm("VmHWM"), "filename": response["Content-Disposition"],
    }))


def child_changelist(args) -> None:
    """Time the changelist page itself (as a superuser) for a few URLs; prints seconds and queries each."""
    child_django()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, setup_test_environment

    setup_test_environment(debug=False)  # so that the response carries its template context (the count shown)
    client = Client()
    client.force_login(get_user_model().objects.get(username="bench"))
    results = []
    for url in json.loads(args.url):
        client.get(url, secure=True)  # warm: templates, caches
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            response = client.get(url, secure=True)
            seconds = time.perf_counter() - started
        assert response.status_code == 200, (url, response.status_code)
        slowest = max(captured.captured_queries, key=lambda q: float(q["time"]))
        results.append({
            "url": url, "seconds": seconds, "queries": len(captured), "count_shown": response.context["cl"].result_count,
            "slowest_query_s": float(slowest["time"]), "slowest_query": slowest["sql"][:160],
        })
    print(json.dumps(results))


# --- the parent ---------------------------------------------------------------------------------------


def machine_busy_ticks() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields[:8]) - idle, sum(fields[:8])


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def wait_quiet(limit_s: int, threshold_cpus: float = 0.3) -> float:
    """Waits until the machine's busy CPUs stay below the threshold for 3 s; returns the seconds waited."""
    started = time.monotonic()
    quiet_since = None
    while time.monotonic() - started < limit_s:
        b0, _ = machine_busy_ticks()
        time.sleep(0.5)
        b1, _ = machine_busy_ticks()
        busy_cpus = (b1 - b0) / CLK_TCK / 0.5
        if busy_cpus < threshold_cpus:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= 3:
                break
        else:
            quiet_since = None
    return time.monotonic() - started


def proc_cpu_ticks(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(fields[11]) + int(fields[12])  # utime + stime


class BackendCpu:
    """CPU of the PostgreSQL backends serving the bench database while a measurement runs.

    The backend does most of the work (the joins, to_char, the CSV) for psql and the export alike;
    on a busy shared machine wall time mostly measures the wait for a CPU, so the CPU both sides
    spend is the steadier comparison. Backends are found by process title (`postgres: … <database> …`)
    and sampled every 50 ms until they exit; a backend seen at the start counts from there.
    """

    def __init__(self, database: str):
        import threading

        self.database = database
        self.first: dict[int, int] = {}
        self.last: dict[int, int] = {}
        for pid in self._backends():
            ticks = proc_cpu_ticks(pid)
            if ticks is not None:
                self.first[pid] = self.last[pid] = ticks
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _backends(self) -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except (FileNotFoundError, ProcessLookupError, PermissionError):
                    continue
                if title.startswith("postgres: ") and f" {self.database} " in title:
                    found.append(int(entry.name))
        return found

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in self._backends():
                ticks = proc_cpu_ticks(pid)
                if ticks is not None:
                    self.first.setdefault(pid, 0)  # new since the start: all its CPU is ours
                    self.last[pid] = ticks
            for pid in list(self.last):
                ticks = proc_cpu_ticks(pid)
                if ticks is not None:
                    self.last[pid] = ticks
            self._stop.wait(0.05)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return sum(self.last[pid] - self.first[pid] for pid in self.last) / CLK_TCK


def run_measured(cmd: list[str], env: dict) -> dict:
    """Runs a helper (not a measurement) and returns its stdout; raises with its stderr on failure."""
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd[:6])}… failed ({done.returncode}): {done.stderr[-3000:]}")
    return {"stdout": done.stdout}


def run_with_rusage(cmd: list[str], env: dict, database: str) -> dict:
    """Runs a measured process: wall time, its own rusage (os.wait4), its PostgreSQL backend's CPU, the load."""
    load_before = loadavg()
    backend = BackendCpu(database)
    busy0, _ = machine_busy_ticks()
    out = OUT / f"child-{os.getpid()}-{time.monotonic_ns()}.out"
    err = out.with_suffix(".err")
    started = time.perf_counter()
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        pid = os.posix_spawn(cmd[0], cmd, env, file_actions=[
            (os.POSIX_SPAWN_DUP2, stdout.fileno(), 1), (os.POSIX_SPAWN_DUP2, stderr.fileno(), 2),
        ])
        _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    time.sleep(0.2)  # the backend exits just after its client: let the poller see its last ticks
    backend_cpu = backend.stop()
    busy1, _ = machine_busy_ticks()
    text, errors = out.read_text(), err.read_text()
    out.unlink()
    err.unlink()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])}… failed: {errors[-3000:]}")
    return {
        "wall": wall, "stdout": text, "cpu": usage.ru_utime + usage.ru_stime, "maxrss_mb": usage.ru_maxrss / 1024,
        "backend_cpu": backend_cpu,
        "load": load_before, "machine_busy_cpus": (busy1 - busy0) / CLK_TCK / wall,
    }


def me(args, *extra: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--database", args.database, "--pg", args.pg, "--rows", str(args.rows), *extra]


def recreate_database(args) -> None:
    import psycopg

    with psycopg.connect(f"{args.pg}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{args.database}"')


def drop_database(args) -> None:
    import psycopg

    with psycopg.connect(f"{args.pg}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')


def database_rows(args) -> int | None:
    import psycopg

    try:
        with psycopg.connect(f"{args.pg}/{args.database}") as conn:
            return conn.execute("SELECT count(*) FROM cashback_transaction").fetchone()[0]
    except psycopg.Error:
        return None


def body_digest(path: Path) -> tuple[int, str]:
    """Rows after the header line, and a SHA-256 of those bytes."""
    digest = hashlib.sha256()
    rows = 0
    with open(path, "rb") as f:
        f.readline()
        while block := f.read(1 << 20):
            digest.update(block)
            rows += block.count(b"\n")
    return rows, digest.hexdigest()


def psql_binary() -> str:
    found = shutil.which("psql")
    if not found:
        sys.exit("psql not found (Debian: apt-get install postgresql-client-15)")
    return found


def measure_psql(args, env, select: dict, path: Path) -> dict:
    statement = select["select"].replace("\n", " ")
    cmd = [
        psql_binary(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", f"{args.pg}/{args.database}",
        "-c", f"SET TimeZone = '{select['time_zone']}'",
        "-c", f"\\copy ({statement}) TO '{path}' WITH (FORMAT csv, HEADER)",
    ]
    result = run_with_rusage(cmd, env, args.database)
    rows, digest = body_digest(path)
    return {**result, "seconds": result["wall"], "rows": rows, "bytes": path.stat().st_size, "digest": digest}


def measure_export(args, env, url: str, path: Path, iterator: bool) -> dict:
    cmd = me(args, "--child", "export", "--url", url, "--out", str(path), *(["--iterator"] if iterator else []))
    result = run_with_rusage(cmd, env, args.database)
    inner = json.loads(result["stdout"].strip().splitlines()[-1])
    rows, digest = body_digest(path)
    assert rows == inner["rows"], (rows, inner)
    return {**result, **inner, "digest": digest}


def fmt(m: dict, psql_seconds: float | None = None) -> str:
    ratio = f"  ratio {m['seconds'] / psql_seconds:4.2f}x" if psql_seconds else ""
    peak = m.get("hwm_mb", m["maxrss_mb"])
    request_cpu = f" (request {m['request_cpu']:.2f} s)" if "request_cpu" in m else ""
    extra = f" (RSS before the request {m['rss_before_mb']:.0f} MB)" if "rss_before_mb" in m else ""
    return (
        f"{m['rows']:>9,} rows  {m['seconds']:6.2f} s  {m['rows'] / m['seconds']:>9,.0f} rows/s  "
        f"{m['bytes'] / m['seconds'] / 1e6:5.1f} MB/s  cpu {m['cpu']:5.2f} s{request_cpu} + PostgreSQL {m['backend_cpu']:5.2f} s  peak RSS {peak:6.1f} MB{extra}{ratio}  "
        f"[load {m['load']:.2f}, machine busy {m['machine_busy_cpus']:.2f} CPUs]"
    )


def main() -> int:
    args = parse_args()
    if args.child:
        {"setup": child_setup, "select": child_select, "export": child_export, "changelist": child_changelist}[args.child](args)
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    env = bench_env(args)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
    paths = [p for p in args.paths.split(",") if p]
    tables = [t for t in args.tables.split(",") if t]
    log(f"CSV export bench: {args.rows:,} transactions, database {args.database}, code: working tree at {head}"
        f"{' with uncommitted changes (others’ too)' if dirty else ''}; {os.cpu_count()} CPUs, load {loadavg():.2f}")

    if args.reuse and database_rows(args) == args.rows:
        log("1. reusing the database of an earlier run")
    else:
        log("1. database: recreate, migrate, generate")
        recreate_database(args)
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
        subprocess.run(me(args, "--child", "setup"), cwd=ROOT, env=env, check=True)

    results: dict = {"rows": args.rows, "head": head, "dirty": bool(dirty), "started": datetime.now(timezone.utc).isoformat(), "tables": {}}
    failures = []
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    steps = set(args.steps.split(","))
    for table in tables if "exports" in steps else []:
        changelist, _ = TABLES[table]
        export_url = changelist + "export/"
        select = json.loads(run_measured(me(args, "--child", "select", "--url", changelist), env)["stdout"].strip().splitlines()[-1])
        log(f"\n2. {table}: the SELECT both run ({len(select['select'])} characters), in {select['time_zone']}:\n   {select['select'][:400]}…")
        runs: dict[str, list[dict]] = {"psql": [], **{p: [] for p in paths}}
        for n in range(args.repeat):
            for kind in ["psql", *paths]:
                if kind == "iterator" and n >= args.iterator_repeat:
                    continue
                if args.wait_quiet:
                    waited = wait_quiet(args.wait_quiet)
                    if waited > 4:
                        log(f"   (waited {waited:.0f} s for a quiet machine)")
                path = OUT / f"export-{table}-{kind}.csv"
                if kind == "psql":
                    m = measure_psql(args, env, select, path)
                else:
                    m = measure_export(args, env, export_url, path, iterator=(kind == "iterator"))
                runs[kind].append(m)
                log(f"   {n + 1}/{args.repeat} {kind:<8} {fmt(m)}")
        # The same rows as psql: the COPY path byte for byte (after the header), the iterator path by count.
        reference = runs["psql"][-1]
        for kind in paths:
            for m in runs[kind]:
                if m["rows"] != reference["rows"] or (kind == "copy" and m["digest"] != reference["digest"]):
                    failures.append(f"{table} {kind}: {m['rows']} rows / {m['digest'][:12]} vs psql {reference['rows']} / {reference['digest'][:12]}")
        if "iterator" in paths:  # cell by cell, parsed: the iterator quotes empty strings differently from COPY
            import csv

            with open(OUT / f"export-{table}-psql.csv", newline="") as a, open(OUT / f"export-{table}-iterator.csv", newline="") as b:
                ra, rb = csv.reader(a), csv.reader(b)
                next(ra), next(rb)
                if any(x != y for x, y in zip(ra, rb)):
                    failures.append(f"{table} iterator: cells differ from psql's")
        summary = {}
        psql_median = statistics.median(m["seconds"] for m in runs["psql"])
        # CPU of the work itself: the request (or psql's whole process) plus its PostgreSQL backend
        psql_work = statistics.median(m["cpu"] + m["backend_cpu"] for m in runs["psql"])
        for kind, ms in runs.items():
            med = {k: statistics.median(m[k] for m in ms) for k in ["seconds", "cpu", "maxrss_mb", "backend_cpu"]}
            med["hwm_mb"] = max(m.get("hwm_mb", m["maxrss_mb"]) for m in ms)
            med["ratio"] = med["seconds"] / psql_median
            med["rows"] = ms[0]["rows"]
            med["bytes"] = ms[0]["bytes"]
            med["rows_per_s"] = med["rows"] / med["seconds"]
            med["load"] = [round(m["load"], 2) for m in ms]
            med["machine_busy_cpus"] = [round(m["machine_busy_cpus"], 2) for m in ms]
            if "rss_before_mb" in ms[0]:
                med["rss_before_mb"] = statistics.median(m["rss_before_mb"] for m in ms)
                med["request_cpu"] = statistics.median(m["request_cpu"] for m in ms)
            med["work_cpu"] = statistics.median(m.get("request_cpu", m["cpu"]) + m["backend_cpu"] for m in ms)
            med["cpu_ratio"] = med["work_cpu"] / psql_work
            summary[kind] = med
        results["tables"][table] = {"select": select["select"], "runs": {k: [{x: y for x, y in m.items() if x != "stdout"} for m in v] for k, v in runs.items()}, "median": summary}
        log(f"   medians ({args.repeat} runs each):")
        for kind, med in summary.items():
            verdict = ""
            if kind != "psql":
                ok_time = med["ratio"] <= TARGET_RATIO
                ok_mem = med["maxrss_mb"] <= TARGET_RSS_MB
                verdict = f"  time {'OK' if ok_time else 'MISSED'} (≤ {TARGET_RATIO}x), memory {'OK' if ok_mem else 'MISSED'} (< {TARGET_RSS_MB:.0f} MB)"
            request_cpu = f" (request {med['request_cpu']:.2f} s)" if "request_cpu" in med else ""
            log(f"   {kind:<8} {med['rows']:>9,} rows  {med['seconds']:6.2f} s  {med['rows_per_s']:>9,.0f} rows/s  cpu {med['cpu']:5.2f} s"
                f"{request_cpu} + PostgreSQL {med['backend_cpu']:5.2f} s  peak RSS {med['maxrss_mb']:6.1f} MB  "
                f"ratio {med['ratio']:4.2f}x (CPU {med['work_cpu']:5.2f} s: {med['cpu_ratio']:4.2f}x){verdict}")

    # 3. flat memory: one month of the date hierarchy (~1/12 of the rows) vs all of them; and the changelist pages
    log("\n3. flat memory: a filtered export (the newest full month) beside the full one; the changelist pages")
    month = subprocess.run(
        ["psql", "-X", "-At", "-d", f"{args.pg}/{args.database}", "-c",
         "SELECT to_char(date_trunc('month', max(created_at) AT TIME ZONE 'Asia/Jakarta') - interval '1 month', 'YYYY-MM') FROM cashback_transaction"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    year, mon = month.split("-")
    month_query = f"?created_at__year={int(year)}&created_at__month={int(mon)}"
    flat = {}
    for table in tables if "flat" in steps else []:
        changelist, _ = TABLES[table]
        path = OUT / f"export-{table}-month.csv"
        m = measure_export(args, env, changelist + "export/" + month_query, path, iterator=False)
        flat[table] = {k: v for k, v in m.items() if k != "stdout"}
        full = results["tables"][table]["median"]["copy"] if "copy" in paths and table in results["tables"] else None
        log(f"   {table} {month}: {fmt(m)}" + (f"; the full export peaked at {full['maxrss_mb']:.1f} MB" if full else ""))
        path.unlink()
    results["flat"] = flat
    pages = [
        TABLES["transactions"][0], TABLES["transactions"][0] + "?wallet__id__exact=2", TABLES["transactions"][0] + "?q=081200012345",
        TABLES["transactions"][0] + "?q=INV/123457", TABLES["transactions"][0] + "?q=tokmed",
        TABLES["transactions"][0] + month_query, TABLES["payouts"][0], TABLES["payouts"][0] + "?status__exact=FAILED",
        TABLES["payouts"][0] + "?q=INV/123457", TABLES["payouts"][0] + "?q=081200012345",
    ]
    changelists = []
    if "changelists" in steps:
        changelists = json.loads(run_measured(me(args, "--child", "changelist", "--url", json.dumps(pages)), env)["stdout"].strip().splitlines()[-1])
    for page in changelists:
        log(f"   GET {page['url']:<52} {page['seconds']:5.2f} s  {page['queries']} queries, shows {page['count_shown']:,}; "
            f"slowest query {page['slowest_query_s']:.3f} s: {page['slowest_query'][:70]}…")
    results["changelists"] = changelists

    if not args.keep_files:
        for path in OUT.glob("export-*.csv"):
            path.unlink()
    out = OUT / f"csv-export-{stamp}.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    log(f"\nresults: {out}")
    if not args.keep_db:
        drop_database(args)
        log(f"dropped {args.database} (--keep-db keeps it)")
    for failure in failures:
        log(f"FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
