"""Provider callbacks (API.md "Provider callbacks"): how asynchronous providers report a final result."""

import logging

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from cezbek.api.docs import Error, error_response_doc
from cezbek.errors import AuthenticationFailed, NotFound, ValidationFailed
from wallets.providers import CallbackRejected, get_client
from wallets.services import payout_callback_record

logger = logging.getLogger("cezbek.callbacks")

ASYNC_PROVIDERS = {"XENIT"}


class ProviderCallbackApi(APIView):
    # Authenticated per provider (Xenit: X-Callback-Token), not with partner signatures.
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(
        operation_id="provider_callback",
        summary="A provider reports the final result of a pending payout",
        auth=[],
        parameters=[OpenApiParameter("X-Callback-Token", str, OpenApiParameter.HEADER, required=True, description="Xenit's shared secret.")],
        request=inline_serializer(
            "XenitCallback",
            {
                "topup_ref": serializers.CharField(),
                "topup_time": serializers.CharField(),
                "topup_status": serializers.ChoiceField(choices=["SUCCESS", "FAILED"]),
                "topup_message": serializers.CharField(required=False),
                "ref_code": serializers.CharField(),
                "amount": serializers.DecimalField(max_digits=14, decimal_places=2),
            },
        ),
        responses={
            200: inline_serializer("CallbackAccepted", {"received": serializers.BooleanField(), "payout_status": serializers.CharField()}),
            400: OpenApiResponse(Error, description="validation_error: malformed callback."),
            401: error_response_doc("authentication_failed", "Bad or missing callback token."),
            404: error_response_doc("not_found", "Unknown provider or reference."),
        },
    )
    def post(self, request, code: str):
        code = code.upper()
        if code not in ASYNC_PROVIDERS:
            raise NotFound(f"No callbacks for provider {code!r}.")
        client = get_client(code)
        try:
            body = client.verify_callback(request.headers, request.body)
        except CallbackRejected as exc:
            logger.warning("callback from %s refused: %s", code, exc.reason)
            if exc.reason == "bad callback token":
                raise AuthenticationFailed("Bad or missing callback token.") from None
            raise ValidationFailed(f"Malformed callback: {exc.reason}.", fields={"body": [exc.reason]}) from None
        payout = payout_callback_record(
            provider_code=code,
            reference=body["ref_code"],
            succeeded=body["topup_status"] == "SUCCESS",
            provider_ref=body.get("topup_ref") or "",
            amount=body["amount"],
            message=str(body.get("topup_message") or ""),
        )
        return Response({"received": True, "payout_status": payout.status})
