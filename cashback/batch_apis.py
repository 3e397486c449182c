"""Partner API for batch uploads (API.md `/api/v1/batches`, DOMAIN.md §9)."""

import io

from django.conf import settings
from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from cashback import batches
from cashback.apis import SIGNED
from cashback.models import Batch
from cezbek.api.docs import ERROR_RESPONSES, Error, error_response_doc
from cezbek.errors import ValidationFailed


class BatchOutputSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="The batch id.")
    status = serializers.ChoiceField(choices=Batch.Status.choices, help_text="QUEUED, then RUNNING, then DONE.")
    total = serializers.IntegerField(help_text="Purchase rows in the file.")
    processed = serializers.IntegerField(help_text="Rows done so far: accepted + duplicate + failed.")
    accepted = serializers.IntegerField(help_text="New purchases recorded.")
    duplicate = serializers.IntegerField(help_text="Repeats of a purchase already recorded with the same content.")
    failed = serializers.IntegerField(help_text="Rows refused: a validation error, an unknown wallet or a conflict.")
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    results = serializers.CharField(help_text="Path of the per-row result file.")


def _moment(value):
    return None if value is None else timezone.localtime(value).isoformat()


def batch_document(batch: Batch) -> dict:
    return {
        "id": batch.public_id,
        "status": batch.status,
        "total": batch.total,
        "processed": batch.processed,
        "accepted": batch.accepted,
        "duplicate": batch.duplicate,
        "failed": batch.failed,
        "created_at": _moment(batch.created_at),
        "started_at": _moment(batch.started_at),
        "finished_at": _moment(batch.finished_at),
        "results": f"/api/v1/batches/{batch.public_id}/results",
    }


CSV_EXAMPLE = (
    "partner_ref,msisdn,email,quantity,amount,wallet\n"
    "INV/001/002,628118770510,a@b.id,2,750000.00,LSAJA\n"
    "INV/001/003,08118770511,,1,125000,gpaid\n"
)
RESULTS_EXAMPLE = (
    "row,partner_ref,outcome,kezbek_ref,cashback,reward,total,error_code,error_field,error_message\n"
    "2,INV/001/002,accepted,KZ4V7Q2M6PXN3RJ5WB2ZK8TDHC,7500.00,0.00,7500.00,,,\n"
    "3,INV/001/003,failed,,,,,validation_error,amount,amount: Must be greater than 0.\n"
)
BATCH_EXAMPLE = {
    "id": "BTQ7ZK3M5RX2N8VW4PJ6TYHC2D", "status": "RUNNING", "total": 100000, "processed": 42500, "accepted": 42310,
    "duplicate": 150, "failed": 40, "created_at": "2026-11-21T10:00:00+07:00", "started_at": "2026-11-21T10:00:01+07:00",
    "finished_at": None, "results": "/api/v1/batches/BTQ7ZK3M5RX2N8VW4PJ6TYHC2D/results",
}
NOT_YOURS = error_response_doc("not_found", "No such batch of yours.")


def _file_error(name: str, field: str, message: str) -> OpenApiExample:
    return OpenApiExample(name, value={"error": {"code": "validation_error", "message": f"{field}: {message}", "fields": {field: [message]}}})


FILE_REFUSED = OpenApiResponse(
    Error,
    description=(
        "validation_error: the file cannot be taken as a whole and nothing is created — `content_type` (not "
        "`text/csv`, or a charset other than UTF-8), `header` (a required column missing or repeated), `body` "
        "(empty, no purchase rows, not UTF-8, malformed CSV, too many rows or bytes). Errors of single rows are "
        "not refusals: they are reported per row in the result file."
    ),
    examples=[
        _file_error("Header without a required column", "header", "The first row must name the columns (partner_ref, msisdn, email, quantity, amount, wallet; email optional); missing: wallet."),
        _file_error("Too many rows", "body", "A file may hold at most 100000 rows; split it into several."),
        _file_error("Not CSV", "content_type", "Must be text/csv; got 'application/json'."),
        _file_error("Empty file", "body", "The file is empty."),
    ],
)


def _body_read(django_request) -> None:
    """Reads the body within the batch limit before the signature check hashes it.

    Django refuses bodies over DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB, right for JSON purchases) when
    `request.body` is first read; a CSV of 100,000 rows is bigger. Reading it here, as Django
    would, with our own limit, keeps the global one for every other endpoint.
    """
    try:
        length = int(django_request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > settings.CEZBEK_BATCH_MAX_BYTES:
        raise ValidationFailed.for_field("body", f"The file may be at most {settings.CEZBEK_BATCH_MAX_BYTES} bytes.")
    if not hasattr(django_request, "_body") and not django_request._read_started:
        django_request._body = django_request.read()
        django_request._stream = io.BytesIO(django_request._body)


class BatchCollectionApi(APIView):
    def initial(self, request, *args, **kwargs):
        if request.method == "POST":
            _body_read(request._request)
        super().initial(request, *args, **kwargs)

    @extend_schema(
        operation_id="batches_create",
        summary="Upload a CSV of purchases, recorded asynchronously",
        description=(
            "A CSV body (`Content-Type: text/csv`, UTF-8) whose first row names the columns — the fields of "
            "`POST /api/v1/cashbacks`: `partner_ref`, `msisdn`, `quantity`, `amount`, `wallet`, and optionally "
            "`email` (other columns are ignored) — then one purchase per row, at most "
            f"{settings.CEZBEK_BATCH_MAX_ROWS} rows and {settings.CEZBEK_BATCH_MAX_BYTES} bytes. The signature "
            "covers the raw body like any other. Each row is then recorded with the same validation, rules and "
            "idempotency as a single purchase: a new `partner_ref` is accepted, a repeat with the same content is "
            "a duplicate, the same `partner_ref` with different content fails with `conflict`. A customer's rows "
            "are recorded in file order. A file that cannot be taken as a whole (not CSV, no or a wrong header, "
            "empty, too big) is refused with 400 and nothing is created."
        ),
        parameters=SIGNED,
        request={"text/csv": OpenApiTypes.STR},
        responses={
            202: OpenApiResponse(BatchOutputSerializer, description="Accepted: the batch is QUEUED. `Location` names it."),
            **ERROR_RESPONSES,
            400: FILE_REFUSED,
        },
        examples=[
            OpenApiExample("CSV of purchases", value=CSV_EXAMPLE, request_only=True, media_type="text/csv"),
        ],
    )
    def post(self, request):
        media_type, _, parameters = request.content_type.partition(";")
        charset = parameters.partition("charset=")[2].strip().strip('"').lower()
        if request.body and media_type.strip().lower() != "text/csv":  # an empty body is "empty", whatever its type
            raise ValidationFailed.for_field("content_type", f"Must be text/csv; got {media_type.strip()!r}.")
        if charset and charset not in ("utf-8", "utf8"):
            raise ValidationFailed.for_field("content_type", "The file must be UTF-8 (charset=utf-8).")
        batch = batches.batch_create(partner=request.user, data=request.body, source=Batch.Source.API)
        document = batch_document(batch)
        return Response(document, status=status.HTTP_202_ACCEPTED, headers={"Location": f"/api/v1/batches/{batch.public_id}"})


class BatchDetailApi(APIView):
    @extend_schema(
        operation_id="batches_retrieve",
        summary="A batch's progress and counts",
        parameters=SIGNED,
        responses={200: BatchOutputSerializer, 404: NOT_YOURS, **ERROR_RESPONSES},
        examples=[OpenApiExample("Running", value=BATCH_EXAMPLE, response_only=True)],
    )
    def get(self, request, batch_id: str):
        return Response(batch_document(batches.partner_batch(partner=request.user, public_id=batch_id)))


class BatchResultsApi(APIView):

    @extend_schema(
        operation_id="batches_results",
        summary="The per-row result file (CSV)",
        description=(
            "One line per purchase row, in file order: `row` (its row in the uploaded file, the header being "
            "row 1), `partner_ref`, `outcome` (`accepted`, `duplicate`, `failed`, or `pending` while the batch "
            "runs), `kezbek_ref`, `cashback`, `reward` and `total` of the recorded purchase (for a duplicate: of "
            "the purchase recorded before), and for a failed row `error_code` (`validation_error`, "
            "`unknown_wallet`, `conflict`), `error_field` (the fields at fault, `;`-separated; `row` when the "
            "row has more or fewer values than the header) and `error_message`."
        ),
        parameters=SIGNED,
        responses={
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR,
                description="UTF-8 CSV with a header row.",
                examples=[OpenApiExample("Results", value=RESULTS_EXAMPLE, media_type="text/csv")],
            ),
            404: NOT_YOURS,
            **ERROR_RESPONSES,
        },
    )
    def get(self, request, batch_id: str):
        batch = batches.partner_batch(partner=request.user, public_id=batch_id)
        response = StreamingHttpResponse(batches.batch_results_csv(batch=batch), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{batch.public_id}-results.csv"'
        return response

    def perform_content_negotiation(self, request, force=False):
        # `Accept: text/csv` is what a client of this endpoint may well send: the file is streamed
        # by the view, and errors keep the API's one JSON shape whatever was asked for.
        return super().perform_content_negotiation(request, force=True)
