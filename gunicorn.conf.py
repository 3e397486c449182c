"""Gunicorn settings for the web process (Procfile `web`), read from the environment.

GUNICORN_BIND      address to listen on           default 127.0.0.1:8000
WEB_CONCURRENCY    number of worker processes     default 2 * CPU cores + 1
GUNICORN_THREADS   threads per worker             default 1
GUNICORN_TIMEOUT   seconds before a stuck worker is killed and restarted   default 30
GUNICORN_FORWARDED_ALLOW_IPS  proxies trusted for X-Forwarded-*            default 127.0.0.1
GUNICORN_CONTROL_SOCKET       path of gunicorn's control socket (gunicornc) default none

Gunicorn also honours GUNICORN_CMD_ARGS for anything else.
"""

import multiprocessing
import os


def _int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


bind = [address.strip() for address in os.environ.get("GUNICORN_BIND", "127.0.0.1:8000").split(",") if address.strip()]
workers = _int("WEB_CONCURRENCY", 2 * multiprocessing.cpu_count() + 1)
threads = _int("GUNICORN_THREADS", 1)
timeout = _int("GUNICORN_TIMEOUT", 30)
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
