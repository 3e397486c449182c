"""Batch uploads (DOMAIN.md §9): a CSV of purchases, each row recorded by the single-purchase path.

- `batch_create` checks the whole file before anything is stored — UTF-8 CSV, a header naming the
  API's fields, at least one and at most `CEZBEK_BATCH_MAX_ROWS` rows — and stores the rows' cells
  as uploaded. When it refuses, nothing is created.
- The rows are split into chunks that never share a customer (MSISDN): a customer's rows are
  recorded in file order, as loyalty counts purchases in order, and chunks run in parallel without
  waiting for each other's locks on loyalty states.
- `batch_chunk_process` records one chunk in one database transaction through
  `cashback/batch_record.py`: the validation, rules and idempotency of `POST /api/v1/cashbacks`,
  row by row in file order, with the database work done once per chunk. The chunk's `done_at`,
  its rows' outcomes and the batch's counters are written in that same transaction, after taking
  the chunk's row lock: a chunk run twice (Celery delivers at least once) records nothing twice
  and counts nothing twice, and a chunk that fails half-way leaves nothing behind. Its payouts
  are queued together when the chunk commits.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import logging
import secrets
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import connection, transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone
from kombu.exceptions import KombuError

from cashback import validation
from cashback.models import Batch, BatchChunk, BatchRow
from cashback.batch_record import chunk_record
from cashback.services import Purchase
from cezbek.errors import NotFound, ValidationFailed
from wallets.services import payouts_enqueue

logger = logging.getLogger("cezbek.batches")

# The API's JSON fields, in the order the results and the admin show them.
COLUMNS = ("partner_ref", "msisdn", "email", "quantity", "amount", "wallet")
REQUIRED = ("partner_ref", "msisdn", "quantity", "amount", "wallet")
RESULT_HEADER = (
    "row", "partner_ref", "outcome", "kezbek_ref", "cashback", "reward", "total", "error_code", "error_field", "error_message",
)
REQUIRED_MESSAGE = "This field is required."
O = BatchRow.Outcome
S = Batch.Status


# --- the file --------------------------------------------------------------------------------


@dataclass
class UploadedRow:
    number: int  # the row in the file, the header being row 1
    cells: dict[str, str]
    problem: str = ""  # a defect of the row's shape, reported as its validation error


def batch_file_read(*, data: bytes) -> list[UploadedRow]:
    """The purchase rows of an uploaded file; raises ValidationFailed (nothing stored) when the file
    as a whole cannot be taken: not UTF-8, malformed CSV, no or a wrong header, no rows, too many."""
    if len(data) > settings.CEZBEK_BATCH_MAX_BYTES:
        raise ValidationFailed.for_field("body", f"The file may be at most {settings.CEZBEK_BATCH_MAX_BYTES} bytes.")
    try:
        text = data.decode("utf-8-sig")  # spreadsheets often start UTF-8 files with a byte order mark
    except UnicodeDecodeError as exc:
        raise ValidationFailed.for_field("body", f"Must be UTF-8 text (byte {exc.start} is not).") from None
    if not text.strip():
        raise ValidationFailed.for_field("body", "The file is empty.")
    if "\x00" in text:  # no text column can hold it; a binary file sent by mistake
        raise ValidationFailed.for_field("body", f"Must be text: a NUL character at offset {text.index(chr(0))}.")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = _header_read(next(reader))
        rows = []
        for number, cells in enumerate(reader, start=2):
            if not any(cell.strip() for cell in cells):
                continue  # a blank line is no purchase (it keeps its row number, as in a spreadsheet)
            if len(rows) == settings.CEZBEK_BATCH_MAX_ROWS:
                raise ValidationFailed.for_field(
                    "body", f"A file may hold at most {settings.CEZBEK_BATCH_MAX_ROWS} rows; split it into several."
                )
            rows.append(_row_read(number, header, cells))
    except csv.Error as exc:
        raise ValidationFailed.for_field("body", f"Malformed CSV at line {reader.line_num}: {exc}.") from None
    if not rows:
        raise ValidationFailed.for_field("body", "The file has a header but no purchase rows.")
    return rows


def _header_read(cells: list[str]) -> list[str | None]:
    """Column names, case and spaces ignored; columns other than the API's fields are ignored (None)."""
    names = [cell.strip().lower() for cell in cells]
    expected = ", ".join(COLUMNS)
    missing = [name for name in REQUIRED if name not in names]
    if missing:
        raise ValidationFailed.for_field(
            "header", f"The first row must name the columns ({expected}; email optional); missing: {', '.join(missing)}."
        )
    repeated = sorted({name for name in names if name in COLUMNS and names.count(name) > 1})
    if repeated:
        raise ValidationFailed.for_field("header", f"Each column may appear once; repeated: {', '.join(repeated)}.")
    return [name if name in COLUMNS else None for name in names]


def _row_read(number: int, header: list[str | None], cells: list[str]) -> UploadedRow:
    values = {name: cell for name, cell in zip(header, cells, strict=False) if name is not None}
    problem = ""
    if len(cells) != len(header):
        # A comma in an unquoted amount ("750,000.00") shifts every cell after it: never guess.
        problem = f"Has {len(cells)} values; the header has {len(header)} columns."
    return UploadedRow(number=number, cells=values, problem=problem)


def chunks_plan(*, keys: list[str], size: int) -> tuple[list[int], int]:
    """Assigns each row (by its customer key) a chunk: all rows of a customer in one chunk, about
    `size` rows per chunk, customers in order of first appearance. Returns (chunk per row, chunks)."""
    groups: dict[str, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key, []).append(index)
    chunk_of = [0] * len(keys)
    chunk, filled = 0, 0
    for members in groups.values():
        if filled and filled + len(members) > size:
            chunk, filled = chunk + 1, 0
        for index in members:
            chunk_of[index] = chunk
        filled += len(members)
    return chunk_of, chunk + 1


def _customer_key(cells: dict[str, str]) -> str:
    raw = cells.get("msisdn", "")
    try:
        return validation.normalize_msisdn(raw)
    except ValueError:
        return raw.strip()  # the row fails validation and locks nothing


def batch_id_new() -> str:
    """120 random bits, base32, like a kezbek_ref: nothing to guess from."""
    return "BT" + base64.b32encode(secrets.token_bytes(15)).decode()


# --- creating a batch ------------------------------------------------------------------------


def batch_create(*, partner, data: bytes, source: str, filename: str = "", uploaded_by=None) -> Batch:
    """Stores an uploaded file's rows as a QUEUED batch and queues it once the database commits.

    Raises ValidationFailed, creating nothing, when the file cannot be taken (`batch_file_read`) or
    the partner is inactive.
    """
    if not partner.active:
        raise ValidationFailed.for_field("partner", f"Partner {partner.code} is inactive.")
    rows = batch_file_read(data=data)
    chunk_of, chunk_count = chunks_plan(keys=[_customer_key(row.cells) for row in rows], size=settings.CEZBEK_BATCH_CHUNK_SIZE)
    now = timezone.now()
    with transaction.atomic():
        batch = Batch.objects.create(
            public_id=batch_id_new(),
            partner=partner,
            source=source,
            uploaded_by=uploaded_by,
            filename=filename[:255],
            sha256=hashlib.sha256(data).hexdigest(),
            total=len(rows),
            chunks=chunk_count,
            created_at=now,
            updated_at=now,
        )
        sizes = Counter(chunk_of)
        BatchChunk.objects.bulk_create([BatchChunk(batch=batch, number=n, rows=sizes[n]) for n in range(chunk_count)])
        _rows_insert(batch.pk, rows, chunk_of)
        transaction.on_commit(lambda: batch_enqueue(batch_id=batch.pk))
    logger.info("batch %s of partner %s: %d rows in %d chunks (%s)", batch.public_id, partner.code, len(rows), chunk_count, source)
    return batch


def _rows_insert(batch_id: int, rows: list[UploadedRow], chunk_of: list[int]) -> None:
    """The rows as uploaded, PENDING; on PostgreSQL with COPY (100,000 rows in about a second,
    well inside a web request), elsewhere (SQLite under `make run`) with bulk_create."""
    shape_error = [("validation_error", "row", row.problem) if row.problem else ("", "", "") for row in rows]
    if connection.vendor != "postgresql":
        BatchRow.objects.bulk_create(
            (
                BatchRow(
                    batch_id=batch_id, chunk=chunk, number=row.number, **{name: row.cells.get(name, "") for name in COLUMNS},
                    error_code=code, error_field=field, error_message=message,
                )
                for row, chunk, (code, field, message) in zip(rows, chunk_of, shape_error, strict=True)
            ),
            batch_size=2000,
        )
        return
    qn = connection.ops.quote_name
    columns = ["batch_id", "chunk", "number", *COLUMNS, "outcome", "error_code", "error_field", "error_message"]
    statement = f"COPY {qn(BatchRow._meta.db_table)} ({', '.join(qn(c) for c in columns)}) FROM STDIN"
    pending = BatchRow.Outcome.PENDING.value
    with connection.cursor() as cursor, cursor.copy(statement) as copy:
        for row, chunk, (code, field, message) in zip(rows, chunk_of, shape_error, strict=True):
            cells = row.cells
            copy.write_row(
                (batch_id, chunk, row.number, *[cells.get(name, "") for name in COLUMNS], pending, code, field, message)
            )


def batch_enqueue(*, batch_id: int) -> None:
    """Queues the batch's start. A broker outage loses nothing: the batch sweeper resumes it."""
    from cashback.tasks import batch_start

    try:
        batch_start.apply_async((batch_id,))
    except KombuError:
        logger.exception("could not queue batch %s; the batch sweeper will resume it", batch_id)


def batch_dispatch(*, batch_id: int) -> int:
    """Queues one task per chunk not yet done (all on one broker connection); returns how many."""
    from cashback.tasks import batch_chunk
    from cezbek.celery import app

    numbers = list(BatchChunk.objects.filter(batch_id=batch_id, done_at__isnull=True).order_by("number").values_list("number", flat=True))
    with app.producer_or_acquire() as producer:
        for number in numbers:
            batch_chunk.apply_async((batch_id, number), producer=producer)
    return len(numbers)


def batch_resume(*, batch: Batch) -> None:
    """Queues a batch again (operator action, sweeper): chunks already done are skipped."""
    Batch.objects.filter(pk=batch.pk).exclude(status=S.DONE).update(updated_at=timezone.now())
    transaction.on_commit(lambda: batch_enqueue(batch_id=batch.pk))


def batch_resume_stalled(*, now=None) -> int:
    """Resumes batches that made no progress for CEZBEK_BATCH_STALL_SECONDS (a message lost with a
    worker, a broker outage at upload, a chunk out of retries); returns how many."""
    now = now or timezone.now()
    stale = Batch.objects.exclude(status=S.DONE).filter(updated_at__lt=now - timedelta(seconds=settings.CEZBEK_BATCH_STALL_SECONDS))
    resumed = 0
    for batch_id in list(stale.values_list("pk", flat=True)):
        # Claimed with a conditional update: two sweepers never resume the same batch at once.
        if stale.filter(pk=batch_id).update(updated_at=now):
            logger.warning("batch %s made no progress for %ss: resuming it", batch_id, settings.CEZBEK_BATCH_STALL_SECONDS)
            transaction.on_commit(lambda batch_id=batch_id: batch_enqueue(batch_id=batch_id))
            resumed += 1
    return resumed


# --- processing a chunk ----------------------------------------------------------------------


def purchase_from_row(row: BatchRow) -> Purchase:
    """The row's cells validated and normalised as the API does its JSON fields; raises
    ValidationFailed naming every field that is wrong."""
    errors: dict[str, list[str]] = {}
    values = {}
    parsers = {
        "partner_ref": validation.parse_partner_ref,
        "msisdn": validation.normalize_msisdn,
        "quantity": lambda raw: validation.parse_quantity(raw, from_text=True),
        "amount": validation.parse_amount,
    }
    for name, parse in parsers.items():
        raw = getattr(row, name)
        if raw.strip() == "":
            errors[name] = [REQUIRED_MESSAGE]
            continue
        try:
            values[name] = parse(raw)
        except ValueError as exc:
            errors[name] = [str(exc)]
    email = row.email.strip()
    if email:
        try:
            if len(email) > 254:
                raise DjangoValidationError("Ensure this field has no more than 254 characters.")
            validate_email(email)
        except DjangoValidationError as exc:
            errors["email"] = [str(exc.messages[0])]
    wallet = row.wallet.strip()
    if not wallet:
        errors["wallet"] = [REQUIRED_MESSAGE]
    if errors:
        ordered = {name: errors[name] for name in COLUMNS if name in errors}
        raise ValidationFailed("; ".join(f"{name}: {messages[0]}" for name, messages in ordered.items()), fields=ordered)
    return Purchase(email=email.lower(), wallet=wallet, **values)


def _outcomes_write(rows: list[BatchRow]) -> None:
    """One UPDATE per row, sent as one pipelined batch: `bulk_update`'s CASE expressions cost
    more Python than recording the purchases."""
    table = connection.ops.quote_name(BatchRow._meta.db_table)
    with connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {table} SET outcome = %s, transaction_id = %s, error_code = %s, error_field = %s, error_message = %s WHERE id = %s",
            [(row.outcome, row.transaction_id, row.error_code, row.error_field, row.error_message, row.pk) for row in rows],
        )


def batch_chunk_process(*, batch_id: int, number: int) -> str:
    """Records one chunk's rows and counts them, all in one database transaction; safe to run twice.

    Returns "done" (this call recorded it), "skipped" (already done) or "busy" (another worker holds it).
    """
    batch = Batch.objects.select_related("partner").get(pk=batch_id)
    now = timezone.now()
    if batch.status == S.QUEUED:  # its own short transaction: the batch row is never held while rows are recorded
        Batch.objects.filter(pk=batch_id, status=S.QUEUED).update(status=S.RUNNING, started_at=now, updated_at=now)
    with transaction.atomic():
        # The chunk's row alone (ordering by the batch would join and lock the batch row too).
        chunk = (
            BatchChunk.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(batch_id=batch_id, number=number)
            .order_by("pk")
            .first()
        )
        if chunk is None:
            return "busy"
        if chunk.done_at is not None:
            return "skipped"
        rows = list(BatchRow.objects.filter(batch_id=batch_id, chunk=number).order_by("number"))
        if len(rows) != chunk.rows:
            raise RuntimeError(f"batch {batch_id} chunk {number}: {len(rows)} rows, expected {chunk.rows}")
        now = timezone.now()
        payouts = chunk_record(rows=rows, partner=batch.partner, now=now, purchase_of=purchase_from_row)
        _outcomes_write(rows)
        transaction.on_commit(lambda: payouts_enqueue(payouts=payouts))
        BatchChunk.objects.filter(pk=chunk.pk).update(done_at=now)
        counts = Counter(row.outcome for row in rows)
        n = len(rows)
        complete = When(processed__gte=F("total") - n, then=Value(S.DONE))
        Batch.objects.filter(pk=batch_id).update(
            processed=F("processed") + n,
            accepted=F("accepted") + counts[O.ACCEPTED],
            duplicate=F("duplicate") + counts[O.DUPLICATE],
            failed=F("failed") + counts[O.FAILED],
            status=Case(complete, default=Value(S.RUNNING)),
            finished_at=Case(When(processed__gte=F("total") - n, then=Value(now)), default=F("finished_at")),
            updated_at=now,
        )
    return "done"


# --- reading -----------------------------------------------------------------------------------


def partner_batch(*, partner, public_id: str) -> Batch:
    """The partner's own batch; NotFound for any other (another partner's looks the same as none)."""
    batch = Batch.objects.filter(partner=partner, public_id=public_id).first()
    if batch is None:
        raise NotFound(f"No batch {public_id!r}.")
    return batch


def batch_results_csv(*, batch: Batch) -> Iterator[bytes]:
    """The per-row result file, header first, rows in file order; rows not yet processed show `pending`."""
    rows = (
        BatchRow.objects.filter(batch=batch)
        .order_by("number")
        .values_list(
            "number", "partner_ref", "outcome", "transaction__kezbek_ref", "transaction__cashback", "transaction__reward",
            "transaction__total", "error_code", "error_field", "error_message",
        )
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(RESULT_HEADER)
    for count, row in enumerate(rows.iterator(chunk_size=2000), start=1):
        writer.writerow(["" if cell is None else cell for cell in row])
        if count % 2000 == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()
