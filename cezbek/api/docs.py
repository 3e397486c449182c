"""OpenAPI pieces shared by every endpoint: the one error shape and the errors every call may get."""

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, inline_serializer
from rest_framework import serializers

ERROR_CODES = [
    "authentication_failed",
    "signature_expired",
    "replayed_request",
    "validation_error",
    "unknown_wallet",
    "conflict",
    "not_found",
    "throttled",
    "server_error",
]

ErrorBody = inline_serializer(
    "ErrorBody",
    {
        "code": serializers.ChoiceField(choices=ERROR_CODES),
        "message": serializers.CharField(),
        "fields": serializers.DictField(
            child=serializers.ListField(child=serializers.CharField()),
            required=False,
            help_text="Per field, what is wrong (validation errors).",
        ),
    },
)
Error = inline_serializer("Error", {"error": ErrorBody})


def error_response_doc(code: str, description: str, message: str | None = None) -> OpenApiResponse:
    """One error response; `message` is what the server says, when it is not the description."""
    return OpenApiResponse(
        Error,
        description=description,
        examples=[OpenApiExample(code, value={"error": {"code": code, "message": message or description}})],
    )


ERROR_RESPONSES = {
    400: OpenApiResponse(
        Error,
        description="validation_error or unknown_wallet: malformed JSON, a wrong type, an out-of-range value or an unknown wallet; the field is named and nothing is stored.",
        examples=[
            OpenApiExample(
                "validation_error",
                value={"error": {"code": "validation_error", "message": "amount: Must be greater than 0.", "fields": {"amount": ["Must be greater than 0."]}}},
            ),
            OpenApiExample(
                "unknown_wallet",
                value={"error": {"code": "unknown_wallet", "message": "wallet: Unknown or inactive wallet 'OVO'.", "fields": {"wallet": ["Unknown or inactive wallet 'OVO'."]}}},
            ),
        ],
    ),
    401: OpenApiResponse(
        Error,
        description="authentication_failed (missing headers, unknown or revoked key, inactive partner, bad signature), signature_expired (timestamp more than 300 s away) or replayed_request (signature already used).",
        examples=[
            OpenApiExample(code, value={"error": {"code": code, "message": msg}})
            for code, msg in [
                ("authentication_failed", "Bad signature."),
                ("signature_expired", "X-Cezbek-Timestamp is more than 300 s away from server time."),
                ("replayed_request", "This signature was already used."),
            ]
        ],
    ),
    405: OpenApiResponse(
        Error,
        description="validation_error naming method: this path does not take this HTTP method.",
        examples=[OpenApiExample("validation_error", value={"error": {"code": "validation_error", "message": 'Method "PUT" not allowed.', "fields": {"method": ['Method "PUT" not allowed.']}}})],
    ),
    406: OpenApiResponse(
        Error,
        description="validation_error naming accept: the Accept header asks for something other than JSON.",
        examples=[OpenApiExample("validation_error", value={"error": {"code": "validation_error", "message": "Could not satisfy the request Accept header.", "fields": {"accept": ["Could not satisfy the request Accept header."]}}})],
    ),
    429: OpenApiResponse(Error, description="throttled: too many requests this minute; see the Retry-After header (seconds)."),
    500: OpenApiResponse(Error, description="server_error: never with a stack trace."),
}
