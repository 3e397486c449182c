#!/usr/bin/env python
"""What a request costs before Cezbek's own work: gunicorn, Django, DRF (docs/benchmarks.md).

    .venv/bin/python bench/floor.py [--duration 10] [--connections 16] [--workers 3]

Serves three floors with the bench's gunicorn settings (sync workers, DEBUG off, no access log)
and drives each with wrk POSTing a purchase-sized JSON body at the same concurrency as
bench/api_cashbacks.py, then prints req/s and the workers' CPU per request:
  gunicorn  a bare WSGI app (bench/floor_app.py `hello`);
  django    the project's settings and middleware, a plain Django view reading the JSON;
  drf       the same with a DRF APIView (no authentication, no throttling), the project's parser
            and renderer.
POST /api/v1/cashbacks adds to the last one: the signature check and replay guard, validation,
the purchase's database round trips, the loyalty and cashback rules, the payout hand-off.
Needs wrk; no database or Redis is touched.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import api_cashbacks as bench  # noqa: E402  (bench/ is on sys.path as the script's directory)

BODY = json.dumps({"partner_ref": "INV/001", "msisdn": "628118770510", "email": "budi@example.co.id", "quantity": 2,
                   "amount": "750000.00", "wallet": "LSAJA"})
FLOORS = [("gunicorn", "floor_app:hello", "/"), ("django", "cezbek.wsgi", "/floor/django"), ("drf", "cezbek.wsgi", "/floor/drf")]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--wait-quiet", type=int, default=60, metavar="SECONDS")
    args = p.parse_args()
    wrk = bench.require_tools()[0]
    bench.OUT.mkdir(parents=True, exist_ok=True)
    script = bench.OUT / "floor_post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(BODY)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        'wrk.headers["Host"] = "127.0.0.1"\n'
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "floor_settings", "DJANGO_DEBUG": "0", "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
           "DJANGO_SECRET_KEY": "bench-only-not-a-secret-" + "x" * 40, "DJANGO_SECURE_SSL_REDIRECT": "0", "CEZBEK_LOG_LEVEL": "WARNING",
           "CEZBEK_VAR_DIR": str(bench.OUT / "var"), "PYTHONPATH": os.pathsep.join([str(bench.BENCH), str(bench.ROOT)]),
           "PYTHONDONTWRITEBYTECODE": "1"}
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "GUNICORN_CMD_ARGS"):
        env.pop(name, None)
    rows = []
    for name, app, path in FLOORS:
        g = bench.Gunicorn(args.workers, env, bench.OUT / f"gunicorn-floor-{name}.log", app=app)
        try:
            g.wait_ready()
            url = f"http://127.0.0.1:{g.port}{path}"
            warm = subprocess.run([wrk, "-t", "2", "-c", str(args.connections), "-d", "3s", "-s", str(script), url], capture_output=True, text=True)
            if "Non-2xx" in warm.stdout or warm.returncode:
                raise RuntimeError(f"{name}: warm-up failed:\n{warm.stdout}{warm.stderr}")
            if args.wait_quiet:
                bench.wait_quiet(args.wait_quiet)
            account = bench.CpuAccount({"gunicorn workers": lambda titles: g.worker_pids()})
            started = time.monotonic()
            run = subprocess.run([wrk, "-t", "2", "-c", str(args.connections), "-d", f"{args.duration}s", "--latency", "-s", str(script), url],
                                 capture_output=True, text=True)
            cpu = account.stop("wrk")
            elapsed = time.monotonic() - started
        finally:
            g.stop()
        out = run.stdout
        if "Non-2xx" in out or "Socket errors" in out:
            raise RuntimeError(f"{name}: errors under load:\n{out}")
        requests = int(next(line for line in out.splitlines() if "requests in" in line).split()[0])
        p99 = next(line.split()[1] for line in out.splitlines() if line.strip().startswith("99%"))
        rows.append((name, requests / elapsed, p99, 1000 * cpu["gunicorn workers"] / requests, 1000 * cpu["wrk"] / requests))
        bench.log(f"{name}: {rows[-1][1]:.0f} req/s, p99 {p99}, worker CPU {rows[-1][3]:.3f} ms/request; " + bench.cpu_line(cpu, requests, "request"))
    bench.log(f"\n== floors: gunicorn -w {args.workers} (sync), wrk -c {args.connections}, {args.duration}s each")
    bench.log(f"{'floor':>9} {'req/s':>8} {'p99':>9} {'worker CPU ms/req':>18} {'wrk CPU ms/req':>15}")
    for name, rps, p99, worker_ms, wrk_ms in rows:
        bench.log(f"{name:>9} {rps:>8.0f} {p99:>9} {worker_ms:>18.3f} {wrk_ms:>15.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
