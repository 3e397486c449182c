"""CSV exports from admin changelists: exactly the rows the changelist shows, streamed.

`CsvExportMixin` puts an "Export CSV" button on a changelist for staff holding the model's
`export_<model>` permission. The export is the changelist's own queryset (`get_changelist_instance`:
filters, search, date drill-down and sort order), every page of it, as a UTF-8 CSV with a header
row: money as plain decimals (`7500.00`), times as ISO 8601 in the site's time zone with the offset
(`2026-11-21T10:00:00+07:00`), an empty cell for "none".

On PostgreSQL the server writes the CSV: the changelist's compiled SELECT runs as
`COPY (…) TO STDOUT WITH (FORMAT csv)` and its output is passed on in 64 KiB blocks as it arrives,
the way `psql \\copy` writes a file, so memory stays flat and no Python object is built per row
(docs/benchmarks.md, "CSV exports"). Elsewhere (SQLite under `make run`) the same queryset is read
in chunks with `values_list(…).iterator(chunk_size=…)` and written by `csv.writer`; both paths give
the same cells.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from itertools import islice
from typing import Any

from django.conf import settings
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ERROR_FLAG
from django.contrib.auth import get_permission_codename
from django.core.exceptions import EmptyResultSet, PermissionDenied
from django.db import connections, transaction
from django.db.models import F, Func, QuerySet, TextField, Value
from django.db.models.expressions import BaseExpression
from django.db.models.functions import Cast
from django.http import HttpResponseRedirect, StreamingHttpResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.http import content_disposition_header

logger = logging.getLogger(__name__)

CHUNK_ROWS = 2000  # rows per server-side cursor fetch (iterator path)
BLOCK_BYTES = 64 * 1024  # bytes handed to the web server at a time
# Set to False to take the iterator path on PostgreSQL too (tests and the benchmark compare both).
USE_COPY = True

TEXT, MONEY, DATETIME, LIST = "text", "money", "datetime", "list"
PG_DATETIME = 'YYYY-MM-DD"T"HH24:MI:SSTZH:TZM'  # to_char in the session time zone: ISO 8601 with offset


@dataclass(frozen=True)
class ExportColumn:
    """One CSV column: its header, what `values_list` reads for it, and how its cell is written."""

    header: str
    source: str | BaseExpression  # a field path (`partner__code`) or an expression
    kind: str = TEXT  # TEXT, MONEY (plain decimal), DATETIME (ISO 8601, local), LIST (JSON list, ", "-joined)

    def sql_cell(self) -> str | BaseExpression:
        """What PostgreSQL's COPY prints as this cell."""
        if self.kind == DATETIME:
            return Func(_expression(self.source), Value(PG_DATETIME), function="to_char", output_field=TextField())
        if self.kind == LIST:  # jsonb text `["a", "b"]` → `a, b` (flags are plain codes)
            return Func(Cast(_expression(self.source), TextField()), Value('[]"'), Value(""), function="translate", output_field=TextField())
        return self.source  # numeric(14,2) prints as `7500.00`, text and integers as they are

    def python_cell(self) -> Callable[[Any], str]:
        """How the iterator path writes this cell; None is always an empty cell."""
        return _PYTHON_CELLS[self.kind]


def _expression(source: str | BaseExpression) -> BaseExpression:
    return F(source) if isinstance(source, str) else source


CENT = Decimal("0.01")


def _money(value: Decimal) -> str:
    # Columns come back with their 2 places; a computed amount (SQLite) may not: quantise explicitly.
    return format(value.quantize(CENT, rounding=ROUND_HALF_UP), "f")


def _datetime(value) -> str:
    return timezone.localtime(value).isoformat(timespec="seconds")


def _list(value) -> str:
    return ", ".join(str(item) for item in value)


_PYTHON_CELLS: dict[str, Callable[[Any], str]] = {TEXT: str, MONEY: _money, DATETIME: _datetime, LIST: _list}


# --- the rows --------------------------------------------------------------------------------------


def csv_rows(*, queryset: QuerySet, columns: Sequence[ExportColumn]) -> Iterator[bytes]:
    """The queryset as UTF-8 CSV blocks, header first; lazy: nothing is read until iterated."""
    yield _csv_text([[column.header for column in columns]]).encode()
    if USE_COPY and connections[queryset.db].vendor == "postgresql":
        yield from _rows_by_copy(queryset, columns)
    else:
        yield from _rows_by_iterator(queryset, columns)


def _csv_text(rows: Iterable[Sequence[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)  # "\n" like COPY, so both paths agree
    return buffer.getvalue()


def copy_select(*, queryset: QuerySet, columns: Sequence[ExportColumn]) -> tuple[str, tuple]:
    """The SELECT (and its parameters) whose `COPY … (FORMAT csv)` output is the CSV's body, in the
    site's time zone. Raises EmptyResultSet when the queryset cannot match anything."""
    cells = queryset.values_list(*[column.sql_cell() for column in columns])
    return cells.query.get_compiler(using=queryset.db).as_sql()


def _rows_by_copy(queryset: QuerySet, columns: Sequence[ExportColumn]) -> Iterator[bytes]:
    db = queryset.db
    connection = connections[db]
    try:
        sql, params = copy_select(queryset=queryset, columns=columns)
    except EmptyResultSet:  # e.g. a search that resolved to no ids: nothing to read
        return
    statement = f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)"
    with transaction.atomic(using=db), connection.cursor() as cursor:
        # to_char writes times in the session's time zone: the site's, for this transaction only.
        # Restored before leaving, because Django reads timestamptz as if the session were in UTC;
        # on an error the rollback undoes it.
        cursor.execute("SELECT set_config('TimeZone', %s, true)", [settings.TIME_ZONE])
        with cursor.cursor.copy(statement, params) as copy:
            yield from _blocks(copy)
        cursor.execute("SELECT set_config('TimeZone', %s, true)", [connection.timezone_name])


def _blocks(chunks: Iterable) -> Iterator[bytes]:
    """COPY hands over one row at a time: pass them on in blocks of about BLOCK_BYTES."""
    parts: list = []
    size = 0
    for chunk in chunks:
        parts.append(chunk)
        size += len(chunk)
        if size >= BLOCK_BYTES:
            yield b"".join(parts)
            parts, size = [], 0
    if parts:
        yield b"".join(parts)


def _rows_by_iterator(queryset: QuerySet, columns: Sequence[ExportColumn]) -> Iterator[bytes]:
    cells = [column.python_cell() for column in columns]
    if connections[queryset.db].vendor == "postgresql":
        # In a transaction the server-side cursor streams; in autocommit it would be WITH HOLD,
        # which the server materialises in full first.
        with transaction.atomic(using=queryset.db):
            yield from _iterate(queryset, columns, cells)
    else:
        yield from _iterate(queryset, columns, cells)


def _iterate(queryset: QuerySet, columns: Sequence[ExportColumn], cells) -> Iterator[bytes]:
    rows = queryset.values_list(*[c.source for c in columns]).iterator(chunk_size=CHUNK_ROWS)
    while chunk := list(islice(rows, CHUNK_ROWS)):
        lines = [["" if v is None else cell(v) for cell, v in zip(cells, row)] for row in chunk]
        yield _csv_text(lines).encode()


# --- the admin ------------------------------------------------------------------------------------


class CsvExportMixin:
    """An "Export CSV" button on the changelist: the rows as currently filtered, searched and sorted.

    Needs `export_columns`. Only staff with the view permission and `<app>.export_<model>` see the
    button or may call the URL (403 otherwise).
    """

    export_columns: Sequence[ExportColumn] = ()
    change_list_template = "admin/cezbek/export_change_list.html"

    def has_export_permission(self, request) -> bool:
        opts = self.opts
        codename = get_permission_codename("export", opts)
        return self.has_view_permission(request) and request.user.has_perm(f"{opts.app_label}.{codename}")

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        export = path("export/", self.admin_site.admin_view(self.export_view), name="%s_%s_export" % info)
        return [export, *super().get_urls()]

    def _export_url(self) -> str:
        return reverse(f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_export")

    def changelist_view(self, request, extra_context=None):
        context = dict(extra_context or {})
        if self.has_export_permission(request):
            context["export_url"] = self._export_url()
        return super().changelist_view(request, extra_context=context)

    def export_view(self, request):
        if not self.has_export_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:  # as the changelist itself answers bad filter parameters
            changelist_url = reverse(f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_changelist")
            return HttpResponseRedirect(f"{changelist_url}?{ERROR_FLAG}=1")
        logger.info("CSV export of %s by %s: %s", self.opts.label, request.user.get_username(), request.GET.urlencode() or "all rows")
        stamp = timezone.localtime().strftime("%Y-%m-%d-%H%M")
        response = StreamingHttpResponse(
            csv_rows(queryset=changelist.queryset, columns=self.export_columns), content_type="text/csv; charset=utf-8"
        )
        filename = f"{self.opts.verbose_name_plural}-{stamp}.csv".replace(" ", "-")
        response["Content-Disposition"] = content_disposition_header(True, filename)
        response["Cache-Control"] = "no-store"
        return response
