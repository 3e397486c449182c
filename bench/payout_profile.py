"""Where a payout worker's CPU goes: py-spy sampling of the worker, then a breakdown per payout.

Used by bench/payout_drain.py (`--profile`, at the best setting). py-spy is a developer tool, not a
project requirement (`.venv/bin/pip install py-spy`). Re-analyse a saved sample file with

    .venv/bin/python bench/payout_profile.py bench/out/payout-drain-<stamp>/pyspy-<pool>-<n>.txt [payouts [worker CPU ms/payout]]

py-spy runs with --gil: it samples only threads holding the GIL (not those waiting on PostgreSQL,
Redis or a provider with the GIL released), so the shares are shares of the worker's Python-side
CPU, and samples / rate / payouts estimates CPU ms per payout. Three views:
  * stages: each sample goes to the innermost step of a payout (or of Celery's machinery) on its
    stack: load, refusals, route query, breaker reads, claim, provider call, finish, success,
    per-task connection open/close, message handling...;
  * libraries: each sample goes to the package of its innermost frame.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
RATE_HZ = 100

# Innermost match wins. (label, function name or "*", path fragment)
STAGES = [
    ("DB: open a connection (Celery closes it around every task)", "connect", "django/db/backends/base/base.py"),
    ("DB: open a connection (Celery closes it around every task)", "connect", "psycopg/connection.py"),
    ("DB: open a connection (Celery closes it around every task)", "_connect_gen", "psycopg/_connection_base.py"),
    ("DB: close the connection (Celery's fixup, before and after each task)", "close", "django/db/backends/base/base.py"),
    ("DB: close the connection (Celery's fixup, before and after each task)", "_close_database", "celery/fixups/django.py"),
    ("DB: health check SELECT 1 (CONN_HEALTH_CHECKS)", "is_usable", "django/db/backends/postgresql/base.py"),
    ("Provider call: client, requests, HTTP", "*", "wallets/providers/"),
    ("Breakers: state reads/writes in Redis", "*", "pybreaker"),
    ("Breakers: state reads/writes in Redis", "*", "wallets/breakers.py"),
    ("Route: fee query (route_candidates)", "route_candidates", "wallets/selectors.py"),
    ("Refusals query (payout_refused_by)", "payout_refused_by", "wallets/selectors.py"),
    ("Claim: UPDATE + event + IN_FLIGHT attempt (one transaction)", "_claim", "wallets/services.py"),
    ("Finish attempt: UPDATE", "_finish_attempt", "wallets/services.py"),
    ("Success: UPDATE + event (one transaction)", "_succeed", "wallets/services.py"),
    ("Load the payout (SELECT with transaction and wallet)", "payout_deliver", "wallets/services.py"),
    ("Celery: task protocol, ack, pool, consumer", "*", "celery/"),
    ("Celery: task protocol, ack, pool, consumer", "*", "billiard/"),
    ("Kombu: broker I/O (Redis)", "*", "kombu/"),
]

LIBRARIES = [
    ("psycopg (PostgreSQL driver)", "psycopg"),
    ("Django ORM: SQL compiler", "django/db/models/sql/"),
    ("Django ORM: models, querysets", "django/db/models/"),
    ("Django DB backend", "django/db/backends/"),
    ("Django DB: transactions, utils", "django/db/"),
    ("Django: other", "django/"),
    ("redis-py", "redis/"),
    ("kombu", "kombu/"),
    ("celery", "celery/"),
    ("billiard", "billiard/"),
    ("requests", "requests/"),
    ("urllib3", "urllib3/"),
    ("http.client", "http/client.py"),
    ("email (header parsing)", "email/"),
    ("pybreaker", "pybreaker"),
    ("wallets (application)", "wallets/"),
    ("json", "json/"),
    ("logging", "logging/"),
    ("socket / ssl / selectors", "socket.py"),
    ("socket / ssl / selectors", "selectors.py"),
    ("threading / queue / concurrent", "threading.py"),
    ("threading / queue / concurrent", "queue.py"),
    ("threading / queue / concurrent", "concurrent/"),
    ("decimal / datetime / zoneinfo", "datetime.py"),
    ("decimal / datetime / zoneinfo", "zoneinfo/"),
    ("decimal / datetime / zoneinfo", "_pydecimal.py"),
]


def spy_start(pid: int, output: Path, *, subprocesses: bool, rate: int = RATE_HZ) -> subprocess.Popen | None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        print("py-spy not found (.venv/bin/pip install py-spy): no profile", flush=True)
        return None
    # --gil: only samples of threads holding the GIL, i.e. running Python (or C called from it without
    # releasing the GIL): CPU, not threads waiting on a socket inside psycopg, redis-py or requests.
    cmd = [py_spy, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw", "--output", str(output),
           "--nonblocking", "--gil"]
    if subprocesses:
        cmd.append("--subprocesses")
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(str(output) + ".log", "w"))
    time.sleep(0.3)
    return process


def spy_stop(process: subprocess.Popen | None) -> None:
    if process is None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def _frames(stack: str) -> list[tuple[str, str]]:
    out = []
    for part in stack.split(";"):
        m = FRAME.match(part.strip())
        if m:
            out.append((m["func"], m["file"] or ""))
    return out  # outermost first


def _stage(frames: list[tuple[str, str]]) -> str:
    for func, file in reversed(frames):
        for label, name, fragment in STAGES:
            # py-spy names methods Class.method: compare the last part.
            if fragment in file and (name == "*" or name == func.rsplit(".", 1)[-1]):
                return label
    return "other (imports, Django signals, interpreter)"


def _library(frames: list[tuple[str, str]]) -> str:
    if not frames:
        return "unknown"
    func, file = frames[-1]
    for label, fragment in LIBRARIES:
        if fragment in file:
            return label
    return "other: " + (Path(file).name or "?")


def analyse(raw: Path, *, payouts: int, rate_hz: int = RATE_HZ, cpu_ms_per_payout: float | None = None) -> dict:
    """Breakdown of a py-spy raw file. With `cpu_ms_per_payout` (the worker's CPU from /proc in the
    same run) the ms column is that CPU split by the shares: with more processes than cores, a
    process that holds its GIL while waiting for a core is sampled as busy, so samples / rate
    overstates CPU under prefork."""
    stages: Counter[str] = Counter()
    libraries: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    total = 0
    for line in Path(raw).read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = _frames(stack)
        total += n
        stages[_stage(frames)] += n
        libraries[_library(frames)] += n
        if frames:
            func, file = frames[-1]
            functions[f"{func} ({'/'.join(Path(file).parts[-2:])})"] += n

    sampled_ms = 1000 * total / rate_hz / payouts if payouts else 0.0

    def ms_per_payout(samples: int) -> float:
        if cpu_ms_per_payout is not None and total:
            return cpu_ms_per_payout * samples / total
        return 1000 * samples / rate_hz / payouts

    lines = [f"py-spy (--gil): {total} samples at {rate_hz} Hz = {total / rate_hz:.1f} s holding the GIL for {payouts} payouts "
             f"({sampled_ms:.2f} ms per payout); "
             + (f"ms below = the {cpu_ms_per_payout:.2f} ms of worker CPU per payout measured in /proc, split by share"
                if cpu_ms_per_payout is not None else "ms below = samples / rate / payouts"), ""]
    for title, counter, k in (("Stage", stages, 20), ("Library (innermost frame)", libraries, 14), ("Function (self time)", functions, 15)):
        lines += [f"| {title} | share | ms/payout |", "| --- | --- | --- |"]
        for name, n in counter.most_common(k):
            lines.append(f"| {name} | {100 * n / total:.1f}% | {ms_per_payout(n):.2f} |")
        lines.append("")
    return {
        "samples": total,
        "ms_per_payout": ms_per_payout(total) if payouts else None,
        "stages": {k: {"share": v / total, "ms_per_payout": ms_per_payout(v)} for k, v in stages.most_common()},
        "libraries": {k: {"share": v / total, "ms_per_payout": ms_per_payout(v)} for k, v in libraries.most_common(20)},
        "functions": {k: v / total for k, v in functions.most_common(25)},
        "markdown": "\n".join(lines),
    } if total else {"samples": 0, "markdown": "py-spy recorded nothing"}


if __name__ == "__main__":
    result = analyse(Path(sys.argv[1]), payouts=int(sys.argv[2]) if len(sys.argv) > 2 else 3000,
                     cpu_ms_per_payout=float(sys.argv[3]) if len(sys.argv) > 3 else None)
    print(result["markdown"])
