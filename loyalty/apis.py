from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from cashback.apis import SIGNED
from cashback.validation import normalize_msisdn
from cezbek.api.docs import ERROR_RESPONSES, error_response_doc
from cezbek.errors import NotFound, ValidationFailed
from loyalty.models import JourneyEntry
from loyalty.selectors import customer_tier


class JourneyEntrySerializer(serializers.Serializer):
    reason = serializers.ChoiceField(choices=JourneyEntry.Reason.choices)
    tier_before = serializers.CharField(source="tier_before.name")
    tier_after = serializers.CharField(source="tier_after.name")
    count = serializers.IntegerField()
    reward = serializers.DecimalField(max_digits=14, decimal_places=2)
    expires_at = serializers.DateTimeField(allow_null=True)
    kezbek_ref = serializers.CharField(source="transaction.kezbek_ref", allow_null=True, default=None)
    at = serializers.DateTimeField(source="created_at")


class CustomerTierSerializer(serializers.Serializer):
    msisdn = serializers.CharField()
    tier = serializers.CharField()
    rank = serializers.IntegerField()
    count = serializers.IntegerField(help_text="Purchases in the current tier.")
    promote_after = serializers.IntegerField(allow_null=True)
    next_tier = serializers.CharField(allow_null=True)
    entered_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    journey = JourneyEntrySerializer(many=True, help_text="Latest 20 changes, newest first.")


class CustomerTierApi(APIView):
    @extend_schema(
        operation_id="customer_tier",
        summary="The customer's tier with you, expiry applied as of now",
        parameters=SIGNED,
        responses={200: CustomerTierSerializer, 404: error_response_doc("not_found", "No purchase of this customer with you yet.", "No loyalty state for 628118770510."), **ERROR_RESPONSES},
    )
    def get(self, request, msisdn: str):
        try:
            normalized = normalize_msisdn(msisdn)
        except ValueError as exc:
            raise ValidationFailed.for_field("msisdn", str(exc)) from None
        tier = customer_tier(partner=request.user, msisdn=normalized)
        if tier is None:
            raise NotFound(f"No loyalty state for {normalized}.")
        return Response(CustomerTierSerializer(tier).data)
