"""Partner API: record a purchase, read one, list them (API.md "Endpoints")."""

import re

from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from django.utils import timezone
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound as NotFoundError
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from cashback import selectors, services, validation
from cezbek.api.docs import ERROR_RESPONSES, error_response_doc
from cezbek.errors import NotFound, ValidationFailed
from wallets.models import Payout


class _ParsedField(serializers.Field):
    """A field validated by one of cashback.validation's functions."""

    parse = None

    def to_internal_value(self, data):
        try:
            return type(self).parse(data)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def to_representation(self, value):
        return value


class MsisdnField(_ParsedField):
    parse = staticmethod(validation.normalize_msisdn)


class AmountField(_ParsedField):
    parse = staticmethod(validation.parse_amount)


class QuantityField(_ParsedField):
    parse = staticmethod(validation.parse_quantity)


class PartnerRefField(_ParsedField):
    parse = staticmethod(validation.parse_partner_ref)


class TextField(serializers.CharField):
    """A CharField that takes only JSON strings: DRF's turns 5 into "5", so a wallet sent as a
    number came back as an unknown wallet rather than a wrong type."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class PurchaseInputSerializer(serializers.Serializer):
    partner_ref = PartnerRefField(help_text="Your own reference, 1–64 printable characters, unique per partner.")
    msisdn = MsisdnField(help_text="Indonesian mobile number: +62…, 62… or 0…; stored as 62…, 10–15 digits.")
    email = serializers.EmailField(required=False, allow_blank=True, allow_null=True, max_length=254)
    quantity = QuantityField(help_text="Integer 1 to 10000.")
    amount = AmountField(help_text='Purchase amount in IDR: a string ("750000.00") or number, > 0, ≤ 1000000000.00, 2 decimals at most.')
    wallet = TextField(max_length=16, help_text="Active wallet code, case-insensitive: LSAJA, GPAID, JOSVO.")

    def to_purchase(self) -> services.Purchase:
        data = self.validated_data
        return services.Purchase(
            partner_ref=data["partner_ref"],
            msisdn=data["msisdn"],
            quantity=data["quantity"],
            amount=data["amount"],
            wallet=data["wallet"],
            email=(data.get("email") or "").lower(),
        )


def purchase_input(data: dict) -> services.Purchase:
    """The purchase a request body holds; an invalid body raises the serializer's ValidationError,
    which the API's exception handler renders in the documented shape.

    A valid body, the usual case, is read directly with the serializer's own rules (each field's
    parse function, CharField's trimming and refusals, Django's e-mail validator). Anything that
    reading is not sure of goes through PurchaseInputSerializer, which decides and words the
    errors: building a serializer costs more than the rest of the reading.
    `cashback/tests/test_purchase_input.py` checks that both give the same purchase for every input
    the direct reading accepts.
    """
    purchase = _purchase_read(data)
    if purchase is None:
        serializer = PurchaseInputSerializer(data=data)
        serializer.is_valid(raise_exception=True)
        purchase = serializer.to_purchase()
    return purchase


def _purchase_read(data: dict) -> services.Purchase | None:
    """The purchase when every field is valid, else None (the serializer then says why)."""
    try:
        wallet = _text(data["wallet"], max_length=16)
        email = "" if data.get("email") is None else _text(data["email"], max_length=254, blank=True)
        if wallet is None or email is None:
            return None
        if email:
            validate_email(email)
        return services.Purchase(
            partner_ref=validation.parse_partner_ref(data["partner_ref"]),
            msisdn=validation.normalize_msisdn(data["msisdn"]),
            quantity=validation.parse_quantity(data["quantity"]),
            amount=validation.parse_amount(data["amount"]),
            wallet=wallet,
            email=email.lower(),
        )
    except (KeyError, ValueError, DjangoValidationError):
        return None


def _text(value, *, max_length: int, blank: bool = False) -> str | None:
    """A string as DRF's CharField keeps it (trimmed), or None where the field might refuse it."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    if (not value and not blank) or len(value) > max_length or REFUSED_CHARACTERS.search(value):
        return None
    return value


REFUSED_CHARACTERS = re.compile(r"[\x00\ud800-\udfff]")  # DRF's CharField: null and surrogate characters


# drf-spectacular reads these; the custom fields above are documented as strings/integers.
from drf_spectacular.extensions import OpenApiSerializerFieldExtension  # noqa: E402


class _MsisdnDoc(OpenApiSerializerFieldExtension):
    target_class = "cashback.apis.MsisdnField"

    def map_serializer_field(self, auto_schema, direction):
        return {"type": "string", "example": "628118770510", "pattern": r"^(\+62|62|0)8[0-9]+$"}


class _AmountDoc(OpenApiSerializerFieldExtension):
    target_class = "cashback.apis.AmountField"

    def map_serializer_field(self, auto_schema, direction):
        return {"type": "string", "format": "decimal", "pattern": r"^\d+(\.\d{1,2})?$", "example": "750000.00"}


class _QuantityDoc(OpenApiSerializerFieldExtension):
    target_class = "cashback.apis.QuantityField"

    def map_serializer_field(self, auto_schema, direction):
        return {"type": "integer", "minimum": 1, "maximum": 10000, "example": 2}


class _PartnerRefDoc(OpenApiSerializerFieldExtension):
    target_class = "cashback.apis.PartnerRefField"

    def map_serializer_field(self, auto_schema, direction):
        return {"type": "string", "minLength": 1, "maxLength": 64, "example": "INV/001/002"}


class TierSnapshotSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="Tier right after this purchase.")
    count = serializers.IntegerField(help_text="Purchases in that tier after this purchase.")
    expires_at = serializers.DateTimeField(allow_null=True)


class PayoutSummarySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Payout.Status.choices)
    provider = serializers.CharField(allow_null=True, help_text="Provider code once a route is chosen.")
    flags = serializers.ListField(child=serializers.CharField(), help_text='Risk flags, e.g. "velocity".')


class TransactionOutputSerializer(serializers.Serializer):
    kezbek_ref = serializers.CharField(help_text="Cezbek's reference, unique forever.")
    partner_ref = serializers.CharField()
    msisdn = serializers.CharField()
    wallet = serializers.CharField()
    quantity = serializers.IntegerField()
    amount = serializers.DecimalField(max_digits=14, decimal_places=2)
    cashback = serializers.DecimalField(max_digits=14, decimal_places=2)
    reward = serializers.DecimalField(max_digits=14, decimal_places=2)
    total = serializers.DecimalField(max_digits=14, decimal_places=2)
    tier = TierSnapshotSerializer()
    payout = PayoutSummarySerializer(allow_null=True, help_text="null when the total is 0.")
    created_at = serializers.DateTimeField()


def _money(value) -> str:
    return f"{value:.2f}"


def _moment(value) -> str | None:
    return None if value is None else timezone.localtime(value).isoformat()


def transaction_document(txn) -> dict:
    """A transaction's API document, as TransactionOutputSerializer describes it.

    Built by hand: it is rendered on every purchase, and the serializer machinery cost more
    than the rest of the response. `test_api` pins it to the documented shape.
    """
    try:
        payout = txn.payout
    except ObjectDoesNotExist:
        payout = None
    return {
        "kezbek_ref": txn.kezbek_ref,
        "partner_ref": txn.partner_ref,
        "msisdn": txn.msisdn,
        "wallet": txn.wallet.code,
        "quantity": txn.quantity,
        "amount": _money(txn.amount),
        "cashback": _money(txn.cashback),
        "reward": _money(txn.reward),
        "total": _money(txn.total),
        "tier": {"name": txn.tier.name, "count": txn.tier_count, "expires_at": _moment(txn.tier_expires_at)},
        "payout": None
        if payout is None
        else {
            "status": payout.status,
            "provider": payout.provider.code if payout.provider_id else None,
            "flags": list(payout.flags),
        },
        "created_at": _moment(txn.created_at),
    }



class CashbackListFilterSerializer(serializers.Serializer):
    msisdn = MsisdnField(required=False)
    status = serializers.ChoiceField(choices=[*Payout.Status.values, "NONE"], required=False)
    created_from = serializers.DateTimeField(required=False)
    created_to = serializers.DateTimeField(required=False)
    cursor = serializers.CharField(required=False)
    # Read by the paginator; refused here when out of range instead of silently replaced.
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=200)


class NewestFirstCursor(CursorPagination):
    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def decode_cursor(self, request):
        """DRF's reading, with a cursor it cannot use refused as a 400 naming `cursor`: DRF answers
        404 for an undecodable one, and lets a position that is no id through to the query (a 500)."""
        try:
            cursor = super().decode_cursor(request)
        except NotFoundError:
            cursor = False
        if cursor is False or (cursor is not None and cursor.position is not None and not (cursor.position.isascii() and cursor.position.isdigit())):
            raise ValidationFailed.for_field("cursor", "Not a cursor of this list: use a next or previous link as given.")
        return cursor


SIGNED = [
    OpenApiParameter("X-Cezbek-Key", OpenApiTypes.STR, OpenApiParameter.HEADER, required=True, description="Your key id."),
    OpenApiParameter(
        "X-Cezbek-Timestamp", OpenApiTypes.INT, OpenApiParameter.HEADER, required=True, description="Unix time in seconds (±300 s)."
    ),
    OpenApiParameter(
        "X-Cezbek-Signature",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        required=True,
        description="hex HMAC-SHA256 of METHOD\\npath?query\\ntimestamp\\nsha256hex(body), keyed with your secret.",
    ),
    # A response header (API.md: 429 with Retry-After), documented on the 429 of every signed call.
    OpenApiParameter(
        "Retry-After",
        OpenApiTypes.INT,
        OpenApiParameter.HEADER,
        response=[429],
        description="Seconds until this minute's window ends and the partner's requests are counted afresh.",
    ),
]


class CashbackCollectionApi(APIView):
    @extend_schema(
        operation_id="cashbacks_create",
        summary="Record a purchase and start its payout",
        parameters=SIGNED,
        request=PurchaseInputSerializer,
        responses={
            201: OpenApiResponse(TransactionOutputSerializer, description="A new purchase."),
            200: OpenApiResponse(TransactionOutputSerializer, description="A repeat of the same purchase: the stored result."),
            409: error_response_doc("conflict", "The same partner_ref with different content."),
            **ERROR_RESPONSES,
        },
        examples=[
            OpenApiExample(
                "Purchase",
                request_only=True,
                value={"partner_ref": "INV/001/002", "msisdn": "628118770510", "email": "a@b.id", "quantity": 2, "amount": "750000.00", "wallet": "LSAJA"},
            )
        ],
    )
    def post(self, request):
        if not isinstance(request.data, dict):
            raise ValidationFailed.for_field("body", "Must be a JSON object.")
        txn, created = services.transaction_record(partner=request.user, purchase=purchase_input(request.data))
        return Response(transaction_document(txn), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(
        operation_id="cashbacks_list",
        summary="Your transactions, newest first",
        parameters=[
            *SIGNED,
            OpenApiParameter("msisdn", OpenApiTypes.STR, description="Only this customer (any accepted form)."),
            OpenApiParameter("status", OpenApiTypes.STR, enum=[*Payout.Status.values, "NONE"], description="Payout state; NONE = no payout."),
            OpenApiParameter("created_from", OpenApiTypes.DATETIME, description="Inclusive, ISO 8601 with offset."),
            OpenApiParameter("created_to", OpenApiTypes.DATETIME, description="Inclusive, ISO 8601 with offset."),
            OpenApiParameter("cursor", OpenApiTypes.STR, description="From `next` / `previous`."),
            OpenApiParameter("page_size", OpenApiTypes.INT, description="1–200, default 50."),
        ],
        responses={
            200: inline_serializer(
                "TransactionPage",
                {
                    "next": serializers.URLField(allow_null=True),
                    "previous": serializers.URLField(allow_null=True),
                    "results": TransactionOutputSerializer(many=True),
                },
            ),
            **ERROR_RESPONSES,
        },
    )
    def get(self, request):
        filters = CashbackListFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        queryset = selectors.partner_transactions(
            partner=request.user,
            msisdn=data.get("msisdn"),
            status=data.get("status"),
            created_from=data.get("created_from"),
            created_to=data.get("created_to"),
        )
        paginator = NewestFirstCursor()
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response([transaction_document(txn) for txn in page])


class CashbackDetailApi(APIView):
    @extend_schema(
        operation_id="cashbacks_retrieve",
        summary="One transaction, with its payout's current state",
        parameters=SIGNED,
        responses={200: TransactionOutputSerializer, 404: error_response_doc("not_found", "No such transaction of yours.", "No transaction 'KZI6HHGML23YHTNZ7VMSQGJAUK'."), **ERROR_RESPONSES},
    )
    def get(self, request, kezbek_ref: str):
        txn = selectors.partner_transaction(partner=request.user, kezbek_ref=kezbek_ref)
        if txn is None:
            raise NotFound(f"No transaction {kezbek_ref!r}.")
        return Response(transaction_document(txn))
