#!/usr/bin/env python
"""Instructions per POST /api/v1/cashbacks, counted by valgrind (docs/benchmarks.md).

    .venv/bin/python bench/instructions.py [--rev REV] [--requests 200] [--warmup 30]

On a shared 2-CPU machine the timed benchmark (api_cashbacks.py) moves by ±10 % from one minute to
the next, more than most single changes save. Valgrind's callgrind counts the instructions the
Python process executes instead: the same count for the same code and inputs whatever else the
machine is doing, so an A/B of a small change (`--rev A`, then the working tree) shows its effect
in one run each. The count covers this process only, in user space (Django, DRF, the ORM, psycopg
and redis-py preparing and parsing; not the kernel, PostgreSQL or Redis), without gunicorn
(requests go through Django's test client, one at a time), and says nothing about cache misses:
it ranks changes, the timed benchmark still decides.

How: the database is recreated and configured as api_cashbacks.py does; then the same script runs
twice under callgrind, with `--warmup` requests and then `--base` or `--base + --requests` measured
ones, and the difference of the two totals divided by `--requests` is the figure. Startup and
warm-up cancel out; Django's test client's own work, standing where gunicorn's would, is counted.
New payouts are gathered as in production and sent 16 to a Celery message. Half of the measured purchases are a new customer's, half a known customer's.
Needs valgrind (Debian: apt-get install valgrind), PostgreSQL and Redis (the bench's defaults).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import api_cashbacks as bench  # noqa: E402  (bench/ is on sys.path as the script's directory)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=200, help="measured requests (default 200)")
    p.add_argument("--base", type=int, default=10, help="requests of the shorter run (default 10)")
    p.add_argument("--warmup", type=int, default=30, help="requests before counting starts to matter (default 30)")
    p.add_argument("--rev", help="run the application code of this git revision instead of the working tree")
    p.add_argument("--database", default="cezbek_instructions", help="scratch database, dropped and recreated")
    p.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/13", help="Redis URL of a DB number to flush and use")
    p.add_argument("--setup", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--child", nargs=4, metavar=("KEY", "SECRET", "COUNT", "TAG"), help=argparse.SUPPRESS)
    return p.parse_args()


SELF = [sys.executable, str(Path(__file__).resolve())]


def child(key_id: str, secret: str, count: int, tag: str, warmup: int) -> None:
    """Runs under callgrind: warm-up requests, then `count` measured ones."""
    import django

    django.setup()
    from django.test import Client

    import sqlcapture

    client = Client(HTTP_HOST="127.0.0.1")
    for n in range(warmup + count):
        # Even requests: a customer new to the database; odd ones: the previous request's customer.
        customer = 1_000_000 + (n // 2) * 2
        payload = {"partner_ref": f"{tag}-{n}", "msisdn": f"62811{customer:07d}", "quantity": 2,
                   "amount": f"{750_000 + 137 * n}.00", "wallet": "LSAJA"}
        response = sqlcapture._post(client, key_id, secret, payload)
        if response.status_code != 201:
            raise SystemExit(f"request {n} answered {response.status_code}: {response.content[:300]!r}")


def counted(args, env: dict, count: int, tag: str) -> int:
    """Recreates and configures the database, runs the child under callgrind, returns its total."""
    bench.recreate_database(args)
    bench.flush_redis(args.redis)
    setup = subprocess.run([*SELF, "--setup"], env=env, capture_output=True, text=True, cwd=bench.SRC)
    if setup.returncode != 0:
        raise SystemExit(f"setup failed:\n{setup.stderr[-2000:]}")
    key_id, secret = setup.stdout.split()[-2:]
    out = bench.OUT / f"callgrind-{tag}.out"
    started = time.monotonic()
    run = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no", "--compress-strings=no",
         *SELF, "--child", key_id, secret, str(count), tag, "--warmup", str(args.warmup)],
        env=env, capture_output=True, text=True, cwd=bench.SRC)
    if run.returncode != 0:
        raise SystemExit(f"callgrind run failed:\n{run.stderr[-3000:]}")
    match = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
    if not match:
        raise SystemExit(f"no total in {out}")
    bench.log(f"  {count + args.warmup} requests ({args.warmup} warm-up): {int(match[1]):,} instructions "
              f"in {time.monotonic() - started:.0f} s")
    return int(match[1])


def setup_database() -> None:
    """In a plain child process: migrate and configure; prints the credential."""
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    key_id, secret = bench.configure()
    print(key_id, secret)


def main() -> int:
    args = parse_args()
    if args.setup:
        setup_database()
        return 0
    if args.child:
        key_id, secret, count, tag = args.child
        child(key_id, secret, int(count), tag, args.warmup)
        return 0
    if not shutil.which("valgrind"):
        sys.exit("valgrind not found: apt-get install valgrind")
    bench.OUT.mkdir(parents=True, exist_ok=True)
    code = bench.select_source(args.rev)
    env = bench.bench_env(args, f"{args.pg}/{args.database}")
    # Payouts are gathered as in production, but sent only in full groups (CEZBEK_PAYOUT_BATCH_SIZE,
    # 16), never on the timer: the same number of Celery messages in every run.
    env.update(PYTHONHASHSEED="0", CEZBEK_PAYOUT_GATHER_SECONDS="3600",
               PYTHONPATH=os.pathsep.join([str(bench.SRC), str(bench.BENCH)]))
    bench.log(f"instructions: code {code}; {args.requests} measured requests, callgrind")
    tag = time.strftime("i%Y%m%d%H%M%S")
    short = counted(args, env, args.base, f"{tag}-short")
    long = counted(args, env, args.base + args.requests, f"{tag}-long")
    per = (long - short) / args.requests
    bench.log(f"instructions per request: {per:,.0f} ({code})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
