"""A Celery worker for bench/payout_drain.py with bench-only patches: what-ifs, not the application.

    PAYOUT_BENCH_EXPERIMENTS=reuse-db,breaker-local .venv/bin/python bench/payout_worker.py worker -P threads -c 32 -Q q

The patches are in bench/payout_whatif.py (what each one stands for is described there), plus:
  reuse-db     keep each thread's/process's database connection across tasks with Celery's own
               `CELERY_DB_REUSE_MAX` setting (read by its Django fixup), here 1000 tasks. Without it
               the fixup closes every connection before and after every task, whatever
               CONN_MAX_AGE says, so each payout opens a new PostgreSQL session.
  prefetch-N   CELERY_WORKER_PREFETCH_MULTIPLIER=N (also settable by the environment).
The patches are applied in the main process before the pool starts, so prefork children inherit them.
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
# The application code bench/payout_drain.py runs (the working tree, or an export of --rev).
sys.path.insert(0, os.environ.get("PAYOUT_BENCH_SRC") or os.path.dirname(BENCH))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cezbek.settings")


def main() -> None:
    names = [e.strip() for e in os.environ.get("PAYOUT_BENCH_EXPERIMENTS", "").split(",") if e.strip()]
    # -P gevent/eventlet: patch the standard library first, as the `celery` command does.
    from celery import maybe_patch_concurrency

    maybe_patch_concurrency(["celery", *sys.argv[1:]])
    import django

    django.setup()
    from payout_whatif import applied

    from cezbek.celery import app

    for name in names:
        if name.startswith("prefetch-"):
            app.conf.update(worker_prefetch_multiplier=int(name.removeprefix("prefetch-")))
    if "reuse-db" in names:
        app.conf.update({"CELERY_DB_REUSE_MAX": 1000})
    with ExitStack() as stack:
        stack.enter_context(applied(names))
        print(f"payout_worker: experiments {names}", flush=True)
        app.worker_main(argv=sys.argv[1:])


if __name__ == "__main__":
    main()
