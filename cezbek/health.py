"""Operations endpoints (API.md): `/healthz`, `/readyz`, `/metrics`.

Plain Django views, outside the partner API: no partner signature, no rate limit, not in the
OpenAPI schema, exempt from the HTTPS redirect (settings.SECURE_REDIRECT_EXEMPT) so a probe on the
pod's plain-HTTP port is answered rather than redirected. Probes must still send a `Host` that
`DJANGO_ALLOWED_HOSTS` allows.

- `/healthz`: 200 `{"status": "ok"}` as long as the process answers; touches no backend.
- `/readyz`: checks the database (`SELECT 1`), the cache (a set then a get) and the Celery broker (a
  connection and a passive declare of each queue, `CEZBEK_READYZ_TIMEOUT` seconds at most, default
  2). 200 with every check's status and latency, or 503 with `failed` naming the checks that
  failed. The answer names the exception's type only; the detail (which may name hosts) goes to
  the log.
- `/metrics`: the Prometheus exposition (`cezbek/metrics.py`). Open by default, like the
  probes; with `CEZBEK_METRICS_TOKEN` set it asks for `Authorization: Bearer <token>` (401 without).
"""

import hmac
import logging
import secrets
import time
from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache, caches
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from kombu.exceptions import ChannelError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cezbek import metrics

logger = logging.getLogger("cezbek.health")


@never_cache
@require_safe
def healthz(request):
    return JsonResponse({"status": "ok"})


def database_check() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        if cursor.fetchone() != (1,):
            raise RuntimeError("SELECT 1 did not answer 1")


def cache_check() -> None:
    """A set, a get and a delete of a fresh key. On Redis in one round trip over a connection of
    its own that gives up after `CEZBEK_READYZ_TIMEOUT`, as the other checks do, rather than after
    the cache's own longer timeouts (settings.CACHES)."""
    key, value = f"readyz:{secrets.token_hex(8)}", secrets.token_hex(8)
    if type(caches["default"]).__module__.startswith("django_redis"):
        from django_redis import get_redis_connection

        pool = get_redis_connection("default").connection_pool
        limit = settings.CEZBEK_READYZ_TIMEOUT
        probe = pool.connection_class(**{**pool.connection_kwargs, "socket_timeout": limit, "socket_connect_timeout": limit})
        key = cache.make_key(key)
        try:
            probe.send_packed_command(probe.pack_commands([("SET", key, value, "EX", 10), ("GET", key), ("DEL", key)]))
            got = [probe.read_response() for _ in range(3)][1]
        finally:
            probe.disconnect()
        got = got.decode() if got is not None else None
    else:
        cache.set(key, value, timeout=10)
        try:
            got = cache.get(key)
        finally:
            cache.delete(key)
    if got != value:
        raise RuntimeError("the cache did not return what was just set")


def broker_check() -> None:
    from cezbek.celery import app

    with metrics.broker_connection(url=settings.CELERY_BROKER_URL, timeout=settings.CEZBEK_READYZ_TIMEOUT) as broker:
        broker.ensure_connection(max_retries=0, reraise_as_library_errors=False)
        for queue in app.amqp.queues:
            try:  # a round trip that reads: the broker answers, not just accepts a socket
                broker.default_channel.queue_declare(queue=queue, passive=True)
            except ChannelError as exc:
                if not metrics.queue_missing(exc):
                    raise


CHECKS: dict[str, Callable[[], None]] = {"database": database_check, "cache": cache_check, "broker": broker_check}


@never_cache
@require_safe
def readyz(request):
    results, failed = {}, []
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            check()
        except Exception as exc:  # any failure means "not ready"; the probe reports it, never raises
            logger.warning("readyz: %s check failed: %s: %s", name, type(exc).__name__, exc)
            results[name] = {"status": "failed", "error": type(exc).__name__}
            failed.append(name)
        else:
            results[name] = {"status": "ok"}
        results[name]["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    body = {"status": "unavailable" if failed else "ok", "checks": results}
    if failed:
        body["failed"] = failed
    return JsonResponse(body, status=503 if failed else 200)


@never_cache
@require_safe
def metrics_view(request):
    token = settings.CEZBEK_METRICS_TOKEN
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            response = JsonResponse({"status": "unauthorized", "detail": "Authorization: Bearer <CEZBEK_METRICS_TOKEN> required."}, status=401)
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    return HttpResponse(generate_latest(metrics.scrape()), content_type=CONTENT_TYPE_LATEST)
