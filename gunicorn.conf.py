"""Gunicorn settings for the web process (Procfile `web`), read from the environment.

GUNICORN_BIND      address to listen on           default 127.0.0.1:8000
WEB_CONCURRENCY    number of worker processes     default 2 * CPU cores + 1
GUNICORN_THREADS   threads per worker             default 1
                   Without REDIS_URL: one worker process, with WEB_CONCURRENCY threads at least
                   (the replay guard and the rate limit are then in process memory; see below)
GUNICORN_TIMEOUT   seconds before a stuck worker is killed and restarted   default 300 (CSV exports stream for minutes)
GUNICORN_FORWARDED_ALLOW_IPS  proxies trusted for X-Forwarded-*            default 127.0.0.1
GUNICORN_CONTROL_SOCKET       path of gunicorn's control socket (gunicornc) default none
PROMETHEUS_MULTIPROC_DIR      where workers keep their metrics for /metrics  default a fresh
                              temporary directory per server, removed at exit

Gunicorn also honours GUNICORN_CMD_ARGS for anything else.
"""

import multiprocessing
import os
import shutil
import tempfile
from pathlib import Path


def _int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


bind = [address.strip() for address in os.environ.get("GUNICORN_BIND", "127.0.0.1:8000").split(",") if address.strip()]
workers = _int("WEB_CONCURRENCY", 2 * multiprocessing.cpu_count() + 1)
threads = _int("GUNICORN_THREADS", 1)

# Without REDIS_URL the replay guard and the per-partner rate limit live in process memory
# (Django's local-memory cache, partners/guards.py). A second worker process would not know the
# signatures the first one accepted, and a replayed request it served would pass. So the web
# process runs as one worker then, with its concurrency in threads (gunicorn's gthread worker).
SHARED_GUARDS = bool(os.environ.get("REDIS_URL"))
WORKERS_ASKED = workers
if not SHARED_GUARDS and workers > 1:
    threads = max(threads, workers)
    workers = 1
# A sync worker is killed after this long in one request: CSV exports of millions of rows stream for
# longer than gunicorn's 30 s default (about 25 s per million rows measured on a busy 2-core machine).
timeout = _int("GUNICORN_TIMEOUT", 300)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 20)
keepalive = _int("GUNICORN_KEEPALIVE", 5)
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")

# Access log on stdout. The default format logs the request line, never headers, so no key id,
# timestamp or signature reaches it.
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")

# Gunicorn >= 25 opens a control socket at one per-user path ($HOME/.gunicorn/gunicorn.ctl) unless
# told otherwise, so two servers run by the same user (make run, end-to-end tests, a second
# checkout) would take it from each other. Off unless a path is given.
control_socket_disable = not os.environ.get("GUNICORN_CONTROL_SOCKET")
if not control_socket_disable:
    control_socket = os.environ["GUNICORN_CONTROL_SOCKET"]

# /metrics with several workers (cezbek/metrics.py): prometheus_client's multiprocess mode. Every
# worker writes its samples to files in this directory and a scrape merges them. It must be set
# before a worker imports prometheus_client, hence here, in the master, before the app is loaded.
# One fresh directory per server unless the environment names one; either way emptied at start
# (samples of an earlier run would otherwise be added to this one's).
# (A reload, SIGHUP, reads this file again: the marker keeps it to the directory it made.)
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="cezbek-prometheus-")
    os.environ["CEZBEK_PROMETHEUS_DIR_TEMPORARY"] = "1"
Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)


def on_starting(server):
    for stale in Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).glob("*.db"):
        stale.unlink()
    if not SHARED_GUARDS and WORKERS_ASKED > 1:
        server.log.info(
            "REDIS_URL is unset: one worker with %d threads instead of %d workers, so that the replay "
            "guard and the rate limit, kept in process memory, see every request", threads, WORKERS_ASKED,
        )


def child_exit(server, worker):
    # A dead worker's counters and histograms stay (they are totals); its live gauges go.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if os.environ.get("CEZBEK_PROMETHEUS_DIR_TEMPORARY"):
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


# Gunicorn's own lines (boot, worker exits, the access log) in the app's JSON when the app logs JSON
# (CEZBEK_LOG_FORMAT, by default json unless DJANGO_DEBUG is on; cezbek/logs.py), through its
# request-id filter: the access line is written before the response is closed, so it carries the
# request's id. With the plain format gunicorn keeps its own text.
def _app_logs_json() -> bool:
    chosen = os.environ.get("CEZBEK_LOG_FORMAT", "")
    debug = os.environ.get("DJANGO_DEBUG", "").strip().lower()
    return chosen == "json" or (not chosen and debug not in ("", "1", "true", "yes", "on"))


if _app_logs_json():
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "cezbek.logs.RequestIdFilter"}},
        "formatters": {"json": {"()": "cezbek.logs.JsonLogFormatter"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["request_id"], "stream": "ext://sys.stdout"}},
        "root": {"level": "INFO", "handlers": ["console"]},
        "loggers": {
            name: {"level": loglevel.upper(), "handlers": ["console"], "propagate": False}
            for name in ("gunicorn.error", "gunicorn.access")
        },
    }
