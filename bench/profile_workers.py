"""Where the gunicorn workers' CPU goes under the bench load: py-spy sampling, then a breakdown.

Used by `bench/api_cashbacks.py --profile SECONDS` (py-spy is a developer tool, not a project
requirement: `.venv/bin/pip install py-spy`). Can also re-analyse a saved sample file:

    .venv/bin/python bench/profile_workers.py bench/out/pyspy-<run>.txt

py-spy runs with --gil: it keeps only samples of a thread holding the GIL, i.e. executing Python
(or C called from Python without releasing the GIL). Threads waiting on PostgreSQL, Redis or the
socket release the GIL, and so does a thread that is woken but still waiting for a CPU; without
--gil those look "active" on a saturated 2-CPU machine and psycopg's wait() seemed to dominate.
The shares are shares of the Python side's CPU time, the part that limits throughput here. Three views:
  * request stages: each sample goes to the innermost application step on its stack
    (authentication, throttle, validation, loyalty, rule, writes, commit, enqueue, rendering...);
  * libraries: each sample goes to the package of its innermost frame (psycopg, ORM compiler, ...);
  * functions: self time and inclusive time of single functions.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

# Innermost match wins. (label, function name, path fragment)
STAGES = [
    ("Celery enqueue of the payout task (on_commit → Redis)", "payout_enqueue", "wallets/services.py"),
    ("Replay guard (Redis SET NX)", "replay_guard_claim", "partners/guards.py"),
    ("Rate limit (Redis ADD/INCR)", "rate_limit_hit", "partners/guards.py"),
    ("Secret decryption (Fernet) for the signature check", "credential_secret", "partners/services.py"),
    ("Secret from the snapshot for the signature check", "credential_secret_cached", "partners/services.py"),
    ("Credential lookup query", "credential_for_key", "partners/selectors.py"),
    ("Signature check: rest of authenticate()", "authenticate", "partners/authentication.py"),
    ("Input validation (PurchaseInputSerializer)", "is_valid", "rest_framework/serializers.py"),
    ("Body parsing (DecimalJSONParser)", "parse", "cezbek/api/parsers.py"),
    ("Wallet lookup query", "wallet_active", "wallets/selectors.py"),
    ("Ladder queries (tiers + rewards)", "ladder_current", "loyalty/selectors.py"),
    ("Lock round trip: loyalty state create/lock + velocity lock and sum", "loyalty_state_lock", "loyalty/services.py"),
    ("Loyalty rules", "loyalty_purchase_plan", "loyalty/services.py"),
    ("Cashback rule query", "cashback_rule_matching", "cashback/selectors.py"),
    ("Write round trip: transaction, journey, state, payout, event (one statement)", "insert_chain", "cezbek/sql.py"),
    ("Payout row and event built", "payout_writes", "wallets/services.py"),
    ("Rest of _transaction_insert (BEGIN/COMMIT, the transaction row built)", "_transaction_insert", "cashback/services.py"),
    ("Response document (render_transaction, incl. tier query)", "render_transaction", "cashback/apis.py"),
    ("Rest of transaction_record", "transaction_record", "cashback/services.py"),
    ("JSON rendering of the response", "finalize_response", "rest_framework/views.py"),
    ("Rest of the view (post)", "post", "cashback/apis.py"),
    ("DRF dispatch (request wrapping, negotiation, exceptions)", "dispatch", "rest_framework/views.py"),
    ("Django request handling (middleware, URL resolving, response)", "get_response", "django/core/handlers/base.py"),
    ("Django WSGI handler (request/response objects, signals)", "__call__", "django/core/handlers/wsgi.py"),
    ("gunicorn (accept, HTTP parsing, writing the response)", "", "gunicorn/"),
]

# Matched against the innermost frame's module path as py-spy prints it (relative to sys.path).
LIBRARIES = [
    ("psycopg (driver: send/receive, adapt values)", "psycopg"),
    ("Django ORM: SQL compiler", "django/db/models/sql/"),
    ("Django ORM: models, querysets, fields, expressions", "django/db/models/"),
    ("Django DB backend wrappers (cursor, transaction, signals)", "django/db/"),
    ("Django REST framework", "rest_framework/"),
    ("Django (other: handlers, middleware, urls, http, utils)", "django/"),
    ("Redis client (redis-py, django-redis)", "redis/"),
    ("Redis client (redis-py, django-redis)", "django_redis/"),
    ("Celery / kombu (task enqueue)", "celery/"),
    ("Celery / kombu (task enqueue)", "kombu/"),
    ("cryptography (Fernet)", "cryptography/"),
    ("gunicorn", "gunicorn/"),
    ("Project code (cashback, loyalty, wallets, partners, cezbek, reports)", "cashback/"),
    ("Project code (cashback, loyalty, wallets, partners, cezbek, reports)", "loyalty/"),
    ("Project code (cashback, loyalty, wallets, partners, cezbek, reports)", "wallets/"),
    ("Project code (cashback, loyalty, wallets, partners, cezbek, reports)", "partners/"),
    ("Project code (cashback, loyalty, wallets, partners, cezbek, reports)", "cezbek/"),
    ("Project code (cashback, loyalty, wallets, partners, cezbek, reports)", "reports/"),
]


def parse_raw(path: Path) -> list[tuple[list[tuple[str, str]], int]]:
    """py-spy --format raw: 'frame;frame;...;leaf count' lines (root first). Frames as (func, file)."""
    stacks = []
    pending = ""
    for raw_line in path.read_text(errors="replace").splitlines():
        # A frame name can hold newlines (e.g. a Lua script source in redis-py): join until the count.
        line = (pending + " " + raw_line.strip()) if pending else raw_line.strip()
        if not line:
            continue
        body, _, count = line.rpartition(" ")
        if not count.isdigit():
            pending = line
            continue
        pending = ""
        frames = []
        for part in body.split(";"):
            m = FRAME.match(part)
            if m:
                frames.append((m.group("func"), m.group("file")))
            else:
                frames.append((part, ""))
        stacks.append((frames, int(count)))
    return stacks


def _matches(frame, func, fragment) -> bool:
    f, path = frame
    return fragment in path and (not func or f == func or f.endswith("." + func))


def stage_of(frames) -> str:
    for frame in reversed(frames):
        for label, func, fragment in STAGES:
            if _matches(frame, func, fragment):
                return label
    return "Unattributed (stack truncated: py-spy samples without pausing the workers)"


def library_of(frames) -> str:
    if not frames:
        return "?"
    path = frames[-1][1]
    for label, prefix in LIBRARIES:
        if path.startswith(prefix) or f"/{prefix}" in path:
            return label
    if path.startswith("<frozen"):
        return "stdlib " + path.strip("<>").split()[-1].split(".")[0]
    top = path.split("/")[0].removesuffix(".py")
    if top in sys.stdlib_module_names:
        return f"stdlib {top}"
    return f"package {top}" if top else "?"


def short(path: str) -> str:
    if "/bench/out/src-" in path:  # an exported revision: bench/out/src-<sha>/app/module.py
        return path.split("/bench/out/src-", 1)[1].split("/", 1)[-1]
    for marker in ("site-packages/", "/lib/python3.11/", "/work/main/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def analyse(raw: Path, *, requests: int | None = None, cpu_ms_per_request: float | None = None, top: int = 15) -> dict:
    stacks = parse_raw(raw)
    total = sum(c for _, c in stacks)
    stages, libraries, selfs, inclusive = Counter(), Counter(), Counter(), Counter()
    for frames, count in stacks:
        stages[stage_of(frames)] += count
        libraries[library_of(frames)] += count
        if frames:
            func, path = frames[-1]
            selfs[f"{func} ({short(path)})"] += count
        for name in {f"{func} ({short(path)})" for func, path in frames if path and "gunicorn/" not in path}:
            inclusive[name] += count
    result = {
        "samples": total,
        "stages": [(k, v / total) for k, v in stages.most_common()],
        "libraries": [(k, v / total) for k, v in libraries.most_common()],
        "self": [(k, v / total) for k, v in selfs.most_common(top)],
        "inclusive": [(k, v / total) for k, v in inclusive.most_common(top * 3)],
        "requests": requests,
        "cpu_ms_per_request": cpu_ms_per_request,
    }
    return result


def report(result: dict) -> str:
    ms = result.get("cpu_ms_per_request")

    def row(label, share):
        extra = f" | {share * ms:.2f}" if ms else ""
        return f"| {label} | {100 * share:.1f}%{extra} |"

    head = "| {} | share |" + (" ms/request |" if ms else "")
    sep = "| --- | ---: |" + (" ---: |" if ms else "")
    out = [f"py-spy: {result['samples']} samples of running worker threads"
           + (f", {result['requests']} requests, {ms:.2f} ms worker CPU per request" if ms else ""), ""]
    out += ["Request stages (innermost step on the stack):", "", head.format("stage"), sep]
    out += [row(k, v) for k, v in result["stages"]]
    out += ["", "Libraries (innermost frame):", "", head.format("library"), sep]
    out += [row(k, v) for k, v in result["libraries"]]
    out += ["", "Functions, self time:", "", head.format("function"), sep]
    out += [row(k, v) for k, v in result["self"]]
    out += ["", "Functions, inclusive time:", "", head.format("function"), sep]
    out += [row(k, v) for k, v in result["inclusive"]]
    return "\n".join(out) + "\n"


def profile(*, bench, ctx: dict, args, workers: int, seconds: int, trial_no: int) -> dict | None:
    """Starts gunicorn, warms up, samples its workers with py-spy under the bench load (bench: the
    api_cashbacks module)."""
    import random

    pyspy = shutil.which("py-spy") or (str(bench.VENV_BIN / "py-spy") if (bench.VENV_BIN / "py-spy").exists() else None)
    if not pyspy:
        bench.log("\n== profile skipped: py-spy not found (.venv/bin/pip install py-spy)")
        return None
    bench.log(f"\n== profile: gunicorn -w {workers}, wrk -c {args.connections}, py-spy for {seconds}s")
    pool_base = 1_100_000_000 + trial_no * 1_000_000
    rng = random.Random(args.seed * 1000 + trial_no)
    raw = bench.OUT / f"pyspy-{ctx['run_id']}.txt"
    g = bench.Gunicorn(workers, ctx["env"], bench.OUT / f"gunicorn-profile-w{workers}.log", access_log=args.access_log)
    try:
        g.wait_ready()
        warm_file, load_file = bench.OUT / "requests-profile-warmup.tsv", bench.OUT / "requests-profile.tsv"
        bench.write_requests(warm_file, max(args.warmup, 1) * args.expected_rate * 2, secret=ctx["secret"], rng=rng,
                             prefix=f"{ctx['run_id']}-p-w", pool_base=pool_base, customers=args.customers)
        bench.write_requests(load_file, (seconds + 2) * args.expected_rate * 2, secret=ctx["secret"], rng=rng,
                             prefix=f"{ctx['run_id']}-p", pool_base=pool_base, customers=args.customers)
        wrk_args = dict(port=g.port, connections=args.connections, threads=args.wrk_threads, key_id=ctx["key_id"])
        bench.run_wrk(ctx["wrk"], seconds=max(args.warmup, 1), requests_file=warm_file, **wrk_args)
        spy = subprocess.Popen(
            [pyspy, "record", "--pid", str(g.proc.pid), "--subprocesses", "--nonblocking", "--function", "--gil",
             "--rate", "250", "--format", "raw", "--duration", str(seconds), "--output", str(raw)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        time.sleep(1)  # let py-spy attach to every worker
        account = bench.CpuAccount({"gunicorn workers": lambda titles: g.worker_pids()})
        load = bench.run_wrk(ctx["wrk"], seconds=seconds - 1, requests_file=load_file, **wrk_args)
        cpu = account.stop("wrk")
        bad = load["non2xx"] + load["exhausted"] + sum(load["errors"][k] for k in ("connect", "read", "write", "timeout"))
        _, err = spy.communicate(timeout=seconds + 60)
        if spy.returncode != 0 or not raw.exists():
            bench.log(f"  py-spy failed ({spy.returncode}): {err.strip()[-500:]}")
            return None
    finally:
        g.stop()
    ms = 1000 * cpu["gunicorn workers"] / max(load["requests"], 1)
    bench.log(f"  under py-spy: {load['requests'] / (load['duration_us'] / 1e6):.1f} req/s, "
              f"worker CPU {ms:.2f} ms/request (sampling costs some CPU itself)")
    if bad:
        bench.log(f"  profile INVALID: the load had {bad} errors (statuses {load['statuses']}); see {g.log.name}")
    result = analyse(raw, requests=load["requests"], cpu_ms_per_request=ms)
    text = report(result)
    out = bench.OUT / f"profile-{ctx['run_id']}.md"
    out.write_text(text)
    bench.log(text)
    bench.log(f"profile: {out} (samples: {raw})")
    return {"file": str(out), "raw": str(raw), "errors": bad, **{k: result[k] for k in ("samples", "stages", "libraries", "self")}}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: profile_workers.py PYSPY_RAW_FILE")
    print(report(analyse(Path(sys.argv[1]))))
