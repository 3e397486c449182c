"""Request id and request metrics, for every request the web process answers.

`RequestIdMiddleware` (first in MIDDLEWARE) honours an incoming `X-Request-ID` when it is sane —
1 to 128 characters of letters, digits and `._:=+/@-`, starting with a letter or digit, as load
balancers and partners' clients generate them — and otherwise draws a new one (32 hex digits). It
sets it in `cezbek.logs.request_id` for the request's log lines and the Celery tasks it queues
(until the response is closed), and returns it in the response's `X-Request-ID`.

`RequestMetricsMiddleware` records each request's latency in the Prometheus histogram
(`cezbek/metrics.py`) and writes one log line per request (logger `cezbek.http`).

`SessionMiddleware`, `AuthenticationMiddleware` and `MessageMiddleware` are Django's, for the
admin's pages, and step aside for the signed partner API (`/api/v1/`): a request there is
authenticated by its signature alone, never by a session cookie. They changed an API response in
one way only: an empty session cookie sent along was deleted. Django's CSRF middleware stays as
it is (`check --deploy` looks for it by name, and it costs little: DRF's views are exempt).
"""

import logging
import re
import time
import uuid

from django.contrib.auth import middleware as auth_middleware
from django.contrib.messages import middleware as messages_middleware
from django.contrib.sessions import middleware as sessions_middleware
from django.core.signals import request_finished
from django.dispatch import receiver

from cezbek import logs, metrics

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_META = "HTTP_" + REQUEST_ID_HEADER.upper().replace("-", "_")  # its name in META (WSGI)
PARTNER_API_PREFIX = "/api/v1/"
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:=+/@-]{0,127}")

http_logger = logging.getLogger("cezbek.http")


def request_id_for(incoming: str | None) -> str:
    """The incoming id when it is sane (safe in a log line, a header and a task header), else a new one."""
    if incoming and SANE_REQUEST_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        # From META: `request.headers` would be built for this read alone (nothing else on the
        # partner API's path needs it).
        request.request_id = request_id_for(request.META.get(REQUEST_ID_META))
        # Set until the response is closed (request_finished, below), not just while the middleware
        # chain runs: Django logs a 4xx/5xx response ("Unauthorized: /api/v1/cashbacks") after it.
        logs.request_id.set(request.request_id)
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request.request_id
        return response


@receiver(request_finished, dispatch_uid="cezbek.request_id_forget")
def request_id_forget(**_) -> None:
    logs.request_id.set(None)


class RequestMetricsMiddleware:
    """Latency by view, method and status, and one log line per request.

    The log line names the URL pattern, not the path, so no customer's MSISDN reaches it.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        start = time.perf_counter()
        response = self.get_response(request)
        seconds = time.perf_counter() - start
        match = getattr(request, "resolver_match", None)
        view = match.view_name if match else metrics.UNMATCHED_VIEW
        metrics.request_observe(view=view, method=request.method, status=response.status_code, seconds=seconds)
        http_logger.info(
            "%s %s %s %.1f ms",
            request.method,
            f"/{match.route}" if match else metrics.UNMATCHED_VIEW,
            response.status_code,
            seconds * 1000,
            extra={"view": view, "method": request.method, "status": response.status_code, "duration_ms": round(seconds * 1000, 3)},
        )
        return response


class BrowserOnly:
    """Mixin: the middleware runs for every request except the partner API's."""

    def __call__(self, request):
        if request.path_info.startswith(PARTNER_API_PREFIX):
            return self.get_response(request)
        return super().__call__(request)


class SessionMiddleware(BrowserOnly, sessions_middleware.SessionMiddleware):
    pass


class AuthenticationMiddleware(BrowserOnly, auth_middleware.AuthenticationMiddleware):
    pass


class MessageMiddleware(BrowserOnly, messages_middleware.MessageMiddleware):
    pass
