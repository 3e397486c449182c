"""Reconciliation of provider settlement files and monthly partner invoices (DOMAIN.md §7).

Settlement import, in one database transaction (a bad file writes nothing):
- A file is imported once: its SHA-256 is unique per provider and period (a second import of the
  same bytes for the same period is refused and names the earlier run; two days without credits are
  two identical header-only files, hence the period). A corrected file is a new run and is harmless:
  a payout it finds paid again is MATCHED, never settled twice.
- Each line is matched by provider and client reference (`Payout.reference`, or the reference of
  an earlier attempt at that provider); a line without one (GoPaid, which has no references) by the
  provider's own reference, then — only for providers that carry no client reference — by MSISDN
  and amount against their UNKNOWN / MANUAL_REVIEW payouts when exactly one line and one payout
  share them.
- Outcomes (SettlementLine.Outcome): MATCHED; AMOUNT_MISMATCH (the line and our SUCCEEDED payout
  disagree on amount, MSISDN or wallet); UNKNOWN_TO_CEZBEK (a credit we do not hold as succeeded — an
  UNKNOWN or MANUAL_REVIEW payout that agrees with the line becomes SUCCEEDED with the line as its
  evidence); DUPLICATE_AT_PROVIDER (the reference or payout twice in the file, credited again by the
  same provider in another file, or credited by two providers); MISSING_AT_PROVIDER (a payout that
  succeeded through this provider within the file's period and has no line in any of its files).
- The period: the date given, else the YYYY-MM-DD in the file name (the providers' own
  `<code>-<date>.csv`), else the UTC days its lines were settled on; one UTC day per date
  (`docs/providers.md`: providers' settlement dates are UTC).

Invoices: one per (partner, calendar month in Asia/Jakarta); see `invoice_generate`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import re
import smtplib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import PurePath
from zoneinfo import ZoneInfo

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from cezbek.errors import Conflict, ValidationFailed
from reports import selectors
from reports.models import Invoice, SettlementLine, SettlementRun
from wallets.models import Payout, PayoutAttempt, PayoutEvent, Provider, Wallet
from wallets.providers import GoPaidClient, JosvoClient, LinkSajaClient, MtransClient, XenitClient
from wallets.services import payout_settle_found_paid

logger = logging.getLogger("cezbek.reports")

Outcome = SettlementLine.Outcome
S = Payout.Status

SETTLEMENT_HEADER = ["provider_ref", "client_ref", "wallet", "msisdn", "amount", "fee", "status", "settled_at"]
SETTLED = "SUCCESS"
MAX_AMOUNT = Decimal("1000000000.00")
AMOUNT_RE = re.compile(r"\d{1,13}(\.\d{1,2})?")
MSISDN_RE = re.compile(r"62\d{8,13}")
DATE_IN_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})")
PROVIDER_IN_NAME = re.compile(r"^([A-Za-z0-9]+)-\d{4}-\d{2}-\d{2}")
# Providers that send no client reference: their lines are matched by their own reference, or by
# MSISDN and amount (PROVIDERS.md: GoPaid).
WITHOUT_CLIENT_REF = frozenset(
    c.code for c in (GoPaidClient, JosvoClient, LinkSajaClient, MtransClient, XenitClient) if not c.idempotent
)
SETTLEABLE = (S.UNKNOWN, S.MANUAL_REVIEW)


# --- the file --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileLine:
    """One data line of a settlement file, validated."""

    number: int  # line in the file; the header is line 1
    provider_ref: str
    client_ref: str
    wallet: str
    msisdn: str
    amount: Decimal
    fee: Decimal
    status: str
    settled_at: datetime


def _invalid(message: str) -> ValidationFailed:
    return ValidationFailed(message, fields={"file": [message]})


def settlement_file_parse(*, content: bytes) -> list[FileLine]:
    """Validates a settlement file (PROVIDERS.md columns) completely; the first error names its line and column."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise _invalid(f"The file is not UTF-8 text (byte {error.start + 1}).") from None
    if not text.strip():
        raise _invalid(f"The file is empty: expected the header {','.join(SETTLEMENT_HEADER)}.")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    wallets = set(Wallet.objects.values_list("code", flat=True))
    try:
        header = [name.strip() for name in next(reader)]
        if header != SETTLEMENT_HEADER:
            missing = [c for c in SETTLEMENT_HEADER if c not in header]
            extra = [c for c in header if c not in SETTLEMENT_HEADER]
            detail = "; ".join(
                part
                for part in [
                    f"missing {', '.join(missing)}" if missing else "",
                    f"unexpected {', '.join(repr(c) for c in extra)}" if extra else "",
                    "columns out of order" if not missing and not extra else "",
                ]
                if part
            )
            raise _invalid(f"Line 1 (header): expected {','.join(SETTLEMENT_HEADER)} ({detail}).")
        lines = []
        for row in reader:
            if not row or all(not cell.strip() for cell in row):
                continue  # a blank line (a trailing newline)
            lines.append(_parse_row(reader.line_num, row, wallets))
    except csv.Error as error:
        raise _invalid(f"Line {reader.line_num}: not valid CSV ({error}).") from None
    return lines


def _parse_row(number: int, row: list[str], wallets: set[str]) -> FileLine:
    if len(row) != len(SETTLEMENT_HEADER):
        raise _invalid(f"Line {number}: {len(row)} columns, expected {len(SETTLEMENT_HEADER)} ({','.join(SETTLEMENT_HEADER)}).")
    cells = dict(zip(SETTLEMENT_HEADER, (cell.strip() for cell in row), strict=True))

    def bad(column: str, why: str) -> ValidationFailed:
        return _invalid(f"Line {number}, column {column}: {cells[column]!r} {why}.")

    if not cells["provider_ref"] or len(cells["provider_ref"]) > 100:
        raise bad("provider_ref", "must be 1 to 100 characters")
    if len(cells["client_ref"]) > 100:
        raise bad("client_ref", "is longer than 100 characters")
    if cells["wallet"] not in wallets:
        raise bad("wallet", f"is not a wallet code ({', '.join(sorted(wallets))})")
    if not MSISDN_RE.fullmatch(cells["msisdn"]):
        raise bad("msisdn", "is not a mobile number (62 and 8 to 13 more digits)")
    amount = _money(cells["amount"])
    if amount is None or amount <= 0 or amount > MAX_AMOUNT:
        raise bad("amount", "is not an amount (above 0, at most 1,000,000,000.00, at most 2 decimals)")
    fee = _money(cells["fee"])
    if fee is None:
        raise bad("fee", "is not a fee (0 or more, at most 2 decimals)")
    if cells["status"] != SETTLED:
        raise bad("status", f"is not {SETTLED}, the only status a settlement line may have")
    try:
        settled_at = datetime.fromisoformat(cells["settled_at"])
    except ValueError:
        raise bad("settled_at", "is not an ISO 8601 time (e.g. 2026-05-01T10:15:00.000Z)") from None
    if settled_at.tzinfo is None:
        settled_at = settled_at.replace(tzinfo=UTC)  # providers' times are UTC (docs/providers.md)
    return FileLine(number, cells["provider_ref"], cells["client_ref"], cells["wallet"], cells["msisdn"], amount, fee, cells["status"], settled_at)


def _money(raw: str) -> Decimal | None:
    if not AMOUNT_RE.fullmatch(raw):
        return None
    try:
        return Decimal(raw).quantize(Decimal("0.01"))
    except InvalidOperation:
        return None


def settlement_period(*, lines: list[FileLine], file_name: str, settlement_date: date | None) -> tuple[datetime, datetime, str]:
    """[start, end) of provider time the file covers, and where that came from (see the module's docstring)."""
    if settlement_date is not None:
        return *_utc_days(settlement_date, settlement_date), "date given"
    found = DATE_IN_NAME.search(file_name)
    if found:
        try:
            day = date.fromisoformat(found.group(1))
        except ValueError:
            day = None
        if day is not None:
            return *_utc_days(day, day), "file name"
    if lines:
        days = [line.settled_at.astimezone(UTC).date() for line in lines]
        return *_utc_days(min(days), max(days)), "lines"
    raise _invalid(
        "The file has no lines and its name carries no date: say which day it settles "
        "(the settlement date, or a file name like <provider>-YYYY-MM-DD.csv)."
    )


def _utc_days(first: date, last: date) -> tuple[datetime, datetime]:
    return datetime.combine(first, time.min, tzinfo=UTC), datetime.combine(last + timedelta(days=1), time.min, tzinfo=UTC)


# --- import ----------------------------------------------------------------------------------------


def settlement_import(
    *, provider_code: str, content: bytes, file_name: str, settlement_date: date | None = None, actor=None
) -> SettlementRun:
    """Imports one provider settlement file and reconciles every line; a bad file writes nothing.

    Raises ValidationFailed (unknown provider, bad file: the first error names its line and column)
    or Conflict (this file was imported before).
    """
    code = (provider_code or "").strip().upper()
    provider = Provider.objects.filter(code=code).first()
    if provider is None:
        known = ", ".join(Provider.objects.order_by("code").values_list("code", flat=True)) or "none configured"
        raise ValidationFailed.for_field("provider", f"Unknown provider {provider_code!r} (known: {known}).")
    file_name = PurePath((file_name or "").replace("\\", "/")).name or "settlement.csv"
    named = PROVIDER_IN_NAME.match(file_name)
    if named and named.group(1).upper() != code and Provider.objects.filter(code=named.group(1).upper()).exists():
        raise ValidationFailed.for_field(
            "provider", f"The file {file_name!r} is {named.group(1).upper()}'s settlement, not {code}'s."
        )
    checksum = hashlib.sha256(content).hexdigest()
    lines = settlement_file_parse(content=content)
    start, end, source = settlement_period(lines=lines, file_name=file_name, settlement_date=settlement_date)
    _refuse_if_imported(provider, checksum, start, end)

    run = SettlementRun(
        provider=provider,
        file_name=file_name[:255],
        checksum=checksum,
        period_start=start,
        period_end=end,
        period_source=source,
        line_count=len(lines),
        imported_by=actor,
    )
    stored = default_storage.save(
        f"settlements/{start:%Y/%m}/{code.lower()}-{start:%Y-%m-%d}-{checksum[:12]}.csv", ContentFile(content)
    )
    run.file.name = stored
    try:
        with transaction.atomic():
            try:
                with transaction.atomic():
                    run.save()
            except IntegrityError:
                _refuse_if_imported(provider, checksum, start, end)  # a concurrent import of the same file won
                raise
            _reconcile(run=run, provider=provider, lines=lines, actor=actor)
    except BaseException:
        default_storage.delete(stored)  # nothing written: not even the file
        raise
    logger.info("settlement run %s: %s %s, %s lines, counts %s", run.pk, code, file_name, len(lines), selectors.run_counts(run=run))
    return run


def _refuse_if_imported(provider: Provider, checksum: str, start: datetime, end: datetime) -> None:
    # Identical bytes for another period are another file: two days without credits are two header-only files.
    earlier = SettlementRun.objects.filter(provider=provider, checksum=checksum, period_start=start, period_end=end).first()
    if earlier is not None:
        when = timezone.localtime(earlier.created_at).strftime("%Y-%m-%d %H:%M")
        raise Conflict(
            f"This file was already imported as settlement run {earlier.pk} ({earlier.file_name}, {when}); "
            "importing it again would change nothing."
        )


def _reconcile(*, run: SettlementRun, provider: Provider, lines: list[FileLine], actor) -> None:
    """Classifies every line (settling what was found paid), then records what the file lacks."""
    code = provider.code
    by_ref, by_provider_ref, by_account = _payouts_named(provider=provider, lines=lines)
    ids = set(by_ref.values()) | set(by_provider_ref.values()) | {pk for pks in by_account.values() for pk in pks}
    # Locked in primary-key order: the statuses we judge by cannot change until we commit.
    payouts = {
        p.pk: p
        for p in Payout.objects.select_for_update(of=("self",))
        .select_related("provider", "wallet")
        .filter(pk__in=ids)
        .order_by("pk")
    }
    earlier: dict[int, list[SettlementLine]] = {}  # payout id → its lines in earlier files of this provider
    reported_missing: dict[int, int] = {}  # payout id → the earlier run that found no line for it
    for line in SettlementLine.objects.filter(payout_id__in=ids, run__provider=provider).order_by("run_id", "line_number"):
        if line.outcome == Outcome.MISSING_AT_PROVIDER:
            reported_missing.setdefault(line.payout_id, line.run_id)
        else:
            earlier.setdefault(line.payout_id, []).append(line)
    lines_per_account: dict[tuple[str, Decimal], int] = {}
    for line in lines:
        if not line.client_ref and line.provider_ref not in by_provider_ref:
            key = (line.msisdn, line.amount)
            lines_per_account[key] = lines_per_account.get(key, 0) + 1

    records: list[SettlementLine] = []
    first_with_ref: dict[str, int] = {}
    first_with_provider_ref: dict[str, int] = {}
    payout_line: dict[int, int] = {}
    settled = 0
    for line in lines:
        record = SettlementLine(
            run=run,
            line_number=line.number,
            provider_ref=line.provider_ref,
            client_ref=line.client_ref,
            wallet=line.wallet,
            msisdn=line.msisdn,
            amount=line.amount,
            fee=line.fee,
            status=line.status,
            settled_at=line.settled_at,
        )
        records.append(record)
        notes: list[str] = []
        pk = by_ref.get(line.client_ref) if line.client_ref else by_provider_ref.get(line.provider_ref)
        guessed = False
        if pk is None and not line.client_ref and code in WITHOUT_CLIENT_REF:
            candidates = by_account.get((line.msisdn, line.amount), [])
            if len(candidates) == 1 and lines_per_account[(line.msisdn, line.amount)] == 1:
                pk, guessed = candidates[0], True
            elif candidates:
                notes.append(
                    f"{len(candidates)} {code} payout(s) in UNKNOWN/MANUAL_REVIEW ({', '.join(map(str, candidates))}) and "
                    f"{lines_per_account[(line.msisdn, line.amount)]} line(s) share this MSISDN and amount: resolve by hand"
                )
        payout = payouts.get(pk) if pk is not None else None
        if payout is not None:
            record.payout, record.payout_status, record.payout_amount = payout, payout.status, payout.amount
        # Twice in this file: the first line stands, the others are the duplicates.
        twin = first_with_ref.get(line.client_ref) if line.client_ref else None
        twin = twin or first_with_provider_ref.get(line.provider_ref)
        if twin is None and payout is not None:
            twin = payout_line.get(payout.pk)
        if line.client_ref:
            first_with_ref.setdefault(line.client_ref, line.number)
        first_with_provider_ref.setdefault(line.provider_ref, line.number)
        if twin is not None:
            record.outcome = Outcome.DUPLICATE_AT_PROVIDER
            record.note = _join([f"the same credit as line {twin}: paid twice", *notes])
            continue
        if payout is None:
            record.outcome = Outcome.UNKNOWN_TO_CEZBEK
            record.note = _join([notes[0] if notes else "no payout of ours has this reference"])
            continue
        payout_line[payout.pk] = line.number
        again = [e for e in earlier.get(payout.pk, []) if e.provider_ref != line.provider_ref]
        if again:
            first = again[0]
            record.outcome = Outcome.DUPLICATE_AT_PROVIDER
            record.note = (
                f"{code} already credited payout {payout.pk} (settlement run {first.run_id}, line {first.line_number}, "
                f"provider ref {first.provider_ref}): paid twice"
            )
            continue
        if payout.provider_id != provider.pk:
            if payout.status == S.SUCCEEDED:
                record.outcome = Outcome.DUPLICATE_AT_PROVIDER
                record.note = f"payout {payout.pk} succeeded through {payout.provider.code}; {code} credited it as well: paid twice"
            else:
                record.outcome = Outcome.UNKNOWN_TO_CEZBEK
                route = payout.provider.code if payout.provider else "no route"
                record.note = (
                    f"{code} credited an earlier attempt of payout {payout.pk}, which is {payout.status} on {route}: "
                    "check with both providers before acting on it"
                )
            continue
        differences = _differences(line, payout)
        if payout.status == S.SUCCEEDED:
            record.outcome = Outcome.AMOUNT_MISMATCH if differences else Outcome.MATCHED
            if payout.pk in reported_missing:
                differences.append(f"reported MISSING_AT_PROVIDER by settlement run {reported_missing[payout.pk]}: found here")
            record.note = _join(differences)
            continue
        record.outcome = Outcome.UNKNOWN_TO_CEZBEK
        if guessed:
            notes.append(f"matched by MSISDN and amount ({code} sends no client reference)")
        if payout.status not in SETTLEABLE:
            record.note = _join([f"payout {payout.pk} is {payout.status}: not settled by this run", *notes])
            continue
        if differences:
            record.note = _join([f"payout {payout.pk} not settled: {'; '.join(differences)}: resolve by hand", *notes])
            continue
        evidence = (
            f"found paid in settlement run {run.pk} ({code} file {run.file_name}, line {line.number}, "
            f"provider ref {line.provider_ref}, settled {line.settled_at.isoformat()})"
        )
        if payout_settle_found_paid(payout=payout, provider_ref=line.provider_ref, note=evidence, actor=actor):
            record.payout_settled = True
            settled += 1
            record.note = _join([f"payout {payout.pk} moved from {record.payout_status} to SUCCEEDED with this line as evidence", *notes])
        else:
            record.note = _join([f"payout {payout.pk} moved on meanwhile: not settled", *notes])
    SettlementLine.objects.bulk_create(records, batch_size=1000)
    missing = _missing(run=run, provider=provider)
    SettlementLine.objects.bulk_create(missing, batch_size=1000)
    if settled:
        SettlementRun.objects.filter(pk=run.pk).update(payouts_settled=settled)
        run.payouts_settled = settled


def _payouts_named(*, provider: Provider, lines: list[FileLine]):
    """The payouts the lines can be about: by client reference, by provider reference, by MSISDN and amount."""
    refs = {line.client_ref for line in lines if line.client_ref}
    by_ref = dict(Payout.objects.filter(provider=provider, reference__in=refs).values_list("reference", "pk"))
    # A reference the payout has left behind: an earlier attempt at this provider (it then moved on).
    for reference, pk in (
        PayoutAttempt.objects.filter(provider=provider, reference__in=refs - by_ref.keys())
        .values_list("reference", "payout_id")
        .distinct()
    ):
        by_ref.setdefault(reference, pk)
    bare = [line for line in lines if not line.client_ref]
    provider_refs = {line.provider_ref for line in bare}
    by_provider_ref = dict(
        Payout.objects.filter(provider=provider, provider_ref__in=provider_refs).values_list("provider_ref", "pk")
    )
    for provider_ref, pk in (
        PayoutAttempt.objects.filter(provider=provider, provider_ref__in=provider_refs - by_provider_ref.keys())
        .values_list("provider_ref", "payout_id")
        .distinct()
    ):
        by_provider_ref.setdefault(provider_ref, pk)
    by_account: dict[tuple[str, Decimal], list[int]] = {}
    if provider.code in WITHOUT_CLIENT_REF:
        accounts = {(line.msisdn, line.amount) for line in bare if line.provider_ref not in by_provider_ref}
        if accounts:
            for pk, msisdn, amount in (
                Payout.objects.filter(provider=provider, status__in=SETTLEABLE, msisdn__in={m for m, _ in accounts})
                .order_by("pk")
                .values_list("pk", "msisdn", "amount")
            ):
                if (msisdn, amount) in accounts:
                    by_account.setdefault((msisdn, amount), []).append(pk)
    return by_ref, by_provider_ref, by_account


def _differences(line: FileLine, payout: Payout) -> list[str]:
    found = []
    if line.amount != payout.amount:
        found.append(f"amount: file {line.amount}, payout {payout.amount}")
    if line.msisdn != payout.msisdn:
        found.append(f"msisdn: file {line.msisdn}, payout {payout.msisdn}")
    if line.wallet != payout.wallet.code:
        found.append(f"wallet: file {line.wallet}, payout {payout.wallet.code}")
    return found


def _join(parts: list[str]) -> str:
    return "; ".join(part for part in parts if part)


def _missing(*, run: SettlementRun, provider: Provider) -> list[SettlementLine]:
    """Payouts that succeeded through the provider within the run's period and appear in none of its files."""
    succeeded = PayoutEvent.objects.filter(
        payout=OuterRef("pk"), to_status=S.SUCCEEDED, created_at__gte=run.period_start, created_at__lt=run.period_end
    )
    on_file = SettlementLine.objects.filter(payout=OuterRef("pk"), run__provider=provider, line_number__isnull=False)
    payouts = (
        Payout.objects.filter(provider=provider, status=S.SUCCEEDED)
        .filter(Exists(succeeded))
        .exclude(Exists(on_file))
        .select_related("wallet")
        .order_by("pk")
    )
    return [
        SettlementLine(
            run=run,
            outcome=Outcome.MISSING_AT_PROVIDER,
            provider_ref=payout.provider_ref,
            client_ref=payout.reference,
            wallet=payout.wallet.code,
            msisdn=payout.msisdn,
            payout=payout,
            payout_status=payout.status,
            payout_amount=payout.amount,
            note=f"payout {payout.pk} SUCCEEDED through {provider.code} in this period; no line for it in this or any earlier {provider.code} file",
        )
        for payout in payouts
    ]


# --- invoices --------------------------------------------------------------------------------------

INVOICE_TZ = ZoneInfo("Asia/Jakarta")
INVOICE_COLUMNS = [
    "invoice",
    "partner",
    "partner_name",
    "month",
    "period_start",
    "period_end",
    "currency",
    "transactions",
    "purchase_amount",
    "cashback",
    "reward",
    "payouts_succeeded",
    "payouts_succeeded_amount",
    "provider_fees",
    "generated_at",
]
FIGURES = ["transactions", "purchase_amount", "cashback", "reward", "payouts_succeeded", "payouts_succeeded_amount", "provider_fees"]


@dataclass(frozen=True)
class InvoiceResult:
    invoice: Invoice
    changed: bool  # new, or its figures differ from the stored ones
    emailed: bool  # sent to the partner by this call


def month_bounds(*, month: date) -> tuple[datetime, datetime]:
    """[first instant, first instant of the next month) of a calendar month in Asia/Jakarta."""
    first = month.replace(day=1)
    following = first.replace(year=first.year + 1, month=1) if first.month == 12 else first.replace(month=first.month + 1)
    return datetime.combine(first, time.min, tzinfo=INVOICE_TZ), datetime.combine(following, time.min, tzinfo=INVOICE_TZ)


def month_require_ended(*, month: date, now: datetime | None = None) -> None:
    """Refuses a month that has not ended yet in Asia/Jakarta: an invoice covers a whole month."""
    _, end = month_bounds(month=month)
    if (now or timezone.now()) < end:
        raise ValidationFailed.for_field("month", f"{month:%Y-%m} has not ended yet (Asia/Jakarta): invoice it from {end:%Y-%m-%d}.")


def invoice_generate(*, partner, month: date, email: bool = True) -> InvoiceResult:
    """The partner's invoice for a calendar month (Asia/Jakarta): figures, CSV in storage, email.

    One invoice per (partner, month): generating again replaces the figures and the file when they
    changed and keeps everything as it is when they did not. The partner is emailed (with the CSV
    attached) when the invoice is new or changed, or was never sent; `email=False` never sends.
    """
    month = month.replace(day=1)
    start, end = month_bounds(month=month)
    figures = selectors.invoice_figures(partner=partner, start=start, end=end)
    now = timezone.now()
    stored = None
    old_file = None
    try:
        with transaction.atomic():
            # The partner's row serialises generations of its invoices: never two for one month.
            type(partner).objects.select_for_update().filter(pk=partner.pk).first()
            invoice = Invoice.objects.select_for_update().filter(partner=partner, month=month).first()
            changed = invoice is None or any(getattr(invoice, name) != getattr(figures, name) for name in FIGURES)
            if changed:
                invoice = invoice or Invoice(partner=partner, month=month)
                old_file = invoice.file.name or None
                for name in FIGURES:
                    setattr(invoice, name, getattr(figures, name))
                invoice.period_start, invoice.period_end, invoice.generated_at = start, end, now
                invoice.emailed_at, invoice.emailed_to, invoice.email_error = None, "", ""
                stored = default_storage.save(
                    f"invoices/{month:%Y-%m}/{invoice.number}-{now:%Y%m%dT%H%M%S}.csv",
                    ContentFile(invoice_csv(invoice=invoice).encode()),
                )
                invoice.file.name = stored
                invoice.save()
                if old_file:
                    transaction.on_commit(lambda: default_storage.delete(old_file))
    except BaseException:
        if stored:
            default_storage.delete(stored)
        raise
    emailed = False
    if email and (changed or invoice.emailed_at is None):
        emailed = invoice_email(invoice=invoice)
    logger.info("invoice %s: %s, %s", invoice.number, "new figures" if changed else "unchanged", "emailed" if emailed else "not emailed")
    return InvoiceResult(invoice=invoice, changed=changed, emailed=emailed)


def invoice_csv(*, invoice: Invoice) -> str:
    """The invoice as CSV: a header row and one row of figures (amounts in IDR with 2 decimals)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(INVOICE_COLUMNS)
    writer.writerow(
        [
            invoice.number,
            invoice.partner.code,
            invoice.partner.name,
            f"{invoice.month:%Y-%m}",
            invoice.period_start.astimezone(INVOICE_TZ).isoformat(),
            invoice.period_end.astimezone(INVOICE_TZ).isoformat(),
            "IDR",
            invoice.transactions,
            f"{invoice.purchase_amount:.2f}",
            f"{invoice.cashback:.2f}",
            f"{invoice.reward:.2f}",
            invoice.payouts_succeeded,
            f"{invoice.payouts_succeeded_amount:.2f}",
            f"{invoice.provider_fees:.2f}",
            invoice.generated_at.astimezone(INVOICE_TZ).isoformat(timespec="seconds"),
        ]
    )
    return out.getvalue()


def invoice_email(*, invoice: Invoice) -> bool:
    """Sends the invoice to the partner's email with the CSV attached; records the outcome on the invoice."""
    partner = invoice.partner
    if not partner.email:
        _email_outcome(invoice, error="the partner has no email address")
        return False
    with default_storage.open(invoice.file.name, "rb") as stored:
        content = stored.read()
    message = EmailMessage(
        subject=f"Cezbek invoice {invoice.number} ({invoice.month:%B %Y})",
        body=(
            f"Dear {partner.name},\n\n"
            f"Attached is Cezbek's invoice {invoice.number} for {invoice.month:%B %Y} (Asia/Jakarta):\n\n"
            f"  purchases accepted       {invoice.transactions}, IDR {invoice.purchase_amount:,.2f}\n"
            f"  cashback                 IDR {invoice.cashback:,.2f}\n"
            f"  rewards                  IDR {invoice.reward:,.2f}\n"
            f"  payouts succeeded        {invoice.payouts_succeeded}, IDR {invoice.payouts_succeeded_amount:,.2f}\n"
            f"  provider fees            IDR {invoice.provider_fees:,.2f}\n\n"
            "Kezbek finance\n"
        ),
        to=[partner.email],
    )
    message.attach(f"cezbek-invoice-{partner.code}-{invoice.month:%Y-%m}.csv", content, "text/csv")
    try:
        message.send()
    except (smtplib.SMTPException, OSError) as error:
        logger.warning("invoice %s: email to %s failed: %s", invoice.number, partner.code, error)
        _email_outcome(invoice, error=f"sending failed: {error}"[:300])
        return False
    _email_outcome(invoice, to=partner.email)
    return True


def _email_outcome(invoice: Invoice, *, to: str = "", error: str = "") -> None:
    invoice.emailed_at = timezone.now() if to else invoice.emailed_at
    invoice.emailed_to = to or invoice.emailed_to
    invoice.email_error = error
    Invoice.objects.filter(pk=invoice.pk).update(
        emailed_at=invoice.emailed_at, emailed_to=invoice.emailed_to, email_error=invoice.email_error
    )


def invoices_generate_month(*, month: date, partner=None, email: bool = True) -> list[InvoiceResult]:
    """Every partner's invoice for a month that has ended: the partners with a purchase or a succeeded
    payout in it, or the one partner given (even without any)."""
    month = month.replace(day=1)
    month_require_ended(month=month)
    start, end = month_bounds(month=month)
    partners = [partner] if partner is not None else selectors.partners_active_within(start=start, end=end)
    return [invoice_generate(partner=p, month=month, email=email) for p in partners]
