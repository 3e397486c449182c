"""One renderer for every API error: {"error": {"code", "message", "fields"?}} (API.md)."""

import logging

from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.views import defaults
from rest_framework import exceptions as drf
from rest_framework.response import Response

from cezbek.errors import CezbekError, Throttled

logger = logging.getLogger("cezbek.api")

AUTHENTICATE_HEADER = 'Cezbek-HMAC-SHA256 realm="api"'


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
    if isinstance(exc, drf.ParseError):
        return errors.ValidationFailed(str(exc.detail), fields={"body": [str(exc.detail)]})
    if isinstance(exc, drf.UnsupportedMediaType):
        return errors.ValidationFailed(str(exc.detail), fields={"content_type": [str(exc.detail)]})
    if isinstance(exc, (drf.NotAuthenticated, drf.AuthenticationFailed, drf.PermissionDenied, PermissionDenied)):
        return errors.AuthenticationFailed("Authentication required: sign the request (X-Cezbek-* headers).")
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


# Django-level handlers: JSON for the API (no request ever yields an HTML error page there),
# Django's own pages for the admin.
def _is_api(request) -> bool:
    return request.path_info.startswith("/api/")  # the path within the app, whatever prefix it is served under


def json_404(request, exception=None):
    if _is_api(request):
        return JsonResponse({"error": {"code": "not_found", "message": "Not found."}}, status=404)
    return defaults.page_not_found(request, exception)


def json_500(request):
    if _is_api(request):
        return JsonResponse({"error": {"code": "server_error", "message": "Internal server error."}}, status=500)
    return defaults.server_error(request)


def json_400(request, exception=None):
    if _is_api(request):
        return JsonResponse({"error": {"code": "validation_error", "message": "Bad request."}}, status=400)
    return defaults.bad_request(request, exception)
