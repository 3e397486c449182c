"""One renderer for every API error: {"error": {"code", "message", "fields"?}} (API.md)."""

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, JsonResponse
from django.views import defaults
from rest_framework import exceptions as drf
from rest_framework.response import Response

from cezbek.errors import CezbekError, Throttled

logger = logging.getLogger("cezbek.api")

AUTHENTICATE_HEADER = 'Cezbek-HMAC-SHA256 realm="api"'
AUTHENTICATION_REQUIRED = "Authentication required: sign the request (X-Cezbek-* headers)."


def _fields_from_detail(detail) -> dict[str, list[str]]:
    if isinstance(detail, dict):
        return {
            str(field): [str(m) for m in (messages if isinstance(messages, list) else [messages])]
            for field, messages in detail.items()
        }
    if isinstance(detail, list):
        return {"non_field_errors": [str(m) for m in detail]}
    return {"non_field_errors": [str(detail)]}


def _as_cezbek_error(exc: Exception) -> CezbekError:
    from cezbek import errors

    if isinstance(exc, CezbekError):
        return exc
    if isinstance(exc, drf.ValidationError):
        fields = _fields_from_detail(exc.detail)
        first_field, messages = next(iter(fields.items()))
        return errors.ValidationFailed(f"{first_field}: {messages[0]}", fields=fields)
    if isinstance(exc, RequestDataTooBig):  # read while checking the signature, before any parser
        message = f"The body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."
        return errors.ValidationFailed(message, fields={"body": [message]})
    if isinstance(exc, drf.ParseError):
        return errors.ValidationFailed(str(exc.detail), fields={"body": [str(exc.detail)]})
    if isinstance(exc, drf.UnsupportedMediaType):
        return errors.ValidationFailed(str(exc.detail), fields={"content_type": [str(exc.detail)]})
    if isinstance(exc, (drf.NotAuthenticated, drf.AuthenticationFailed, drf.PermissionDenied, PermissionDenied)):
        return errors.AuthenticationFailed(AUTHENTICATION_REQUIRED)
    if isinstance(exc, drf.Throttled):
        return errors.Throttled("Too many requests.", retry_after=int(exc.wait or 1))
    if isinstance(exc, (drf.NotFound, Http404)):
        return errors.NotFound("Not found.")
    if isinstance(exc, drf.MethodNotAllowed):
        error = errors.ValidationFailed(str(exc.detail), fields={"method": [str(exc.detail)]})
        error.status = 405
        return error
    if isinstance(exc, drf.NotAcceptable):
        error = errors.ValidationFailed(str(exc.detail), fields={"accept": [str(exc.detail)]})
        error.status = 406
        return error
    logger.exception("Unhandled error in the API")
    return CezbekError("Internal server error.")


def error_response(error: CezbekError) -> Response:
    response = Response(error.as_dict(), status=error.status)
    if isinstance(error, Throttled):
        response["Retry-After"] = str(error.retry_after)
    if error.status == 401:
        response["WWW-Authenticate"] = AUTHENTICATE_HEADER
    return response


def api_exception_handler(exc: Exception, context) -> Response:
    """DRF's EXCEPTION_HANDLER: every exception, expected or not, becomes the documented shape."""
    return error_response(_as_cezbek_error(exc))


# Django-level handlers and pages: JSON everywhere but the admin, whose users are browsers. No
# request ever yields an HTML error page (API.md): not the API, the probes, a mistyped path or the
# site root.
ADMIN_PREFIX = "/admin/"

_STATUS_ERRORS = {  # status -> (code, message, field named)
    400: ("validation_error", "Bad request.", None),
    401: ("authentication_failed", AUTHENTICATION_REQUIRED, None),
    403: ("authentication_failed", "Forbidden.", None),
    404: ("not_found", "Not found.", None),
    405: ("validation_error", "Method not allowed.", "method"),
    413: ("validation_error", "The request body is too large.", "body"),
    429: ("throttled", "Too many requests.", None),
}


def _in_admin(request) -> bool:
    return request.path_info.startswith(ADMIN_PREFIX)  # the path within the app, whatever prefix it is served under


def json_error(status: int) -> JsonResponse:
    """The documented shape for an HTTP status that Django, not a view of ours, decided."""
    code, message, field = _STATUS_ERRORS.get(status) or (
        ("server_error", "Internal server error.", None) if status >= 500 else ("validation_error", "Bad request.", None)
    )
    error = {"code": code, "message": message}
    if field:
        error["fields"] = {field: [message]}
    return JsonResponse({"error": error}, status=status)


def json_404(request, exception=None):
    return defaults.page_not_found(request, exception) if _in_admin(request) else json_error(404)


def json_500(request):
    return defaults.server_error(request) if _in_admin(request) else json_error(500)


def json_400(request, exception=None):
    return defaults.bad_request(request, exception) if _in_admin(request) else json_error(400)


class ErrorsAsJsonMiddleware:
    """An HTML error page that reaches it outside the admin becomes the documented JSON shape.

    Django answers some requests before any view of ours (an unknown path, a Host not allowed, a
    body over DATA_UPLOAD_MAX_MEMORY_SIZE) and, with DEBUG on as under `make run`, with its debug
    pages instead of handler400/404/500: a stack trace, the URL list, the settings. Second in
    MIDDLEWARE, inside the request id's, so the answer keeps its X-Request-ID.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if response.status_code >= 400 and response.get("Content-Type", "").startswith("text/html") and not _in_admin(request):
            return json_error(response.status_code)
        return response
