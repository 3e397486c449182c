"""Reconciliation of provider settlement files (DOMAIN.md §7) against real payouts.

Payouts are made by the cashback service and delivered in this process over HTTP to the sandbox,
whose own books then serve the settlement files: what reconciliation finds is what really happened.
"""

import json
from datetime import date, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from cezbek.errors import Conflict, ValidationFailed
from reports.models import SettlementLine, SettlementRun
from reports.selectors import run_counts
from reports.services import settlement_import
from reports.tests.conftest import book_credit, settlement_file, stored_files, utc_today
from wallets.breakers import breakers_reset
from wallets.models import Payout, PayoutEvent

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

S = Payout.Status
O = SettlementLine.Outcome
OUTCOMES = ["MATCHED", "AMOUNT_MISMATCH", "MISSING_AT_PROVIDER", "UNKNOWN_TO_CEZBEK", "DUPLICATE_AT_PROVIDER"]
UNKNOWN_AFTER_CREDIT = {"unknown_rate": 1, "unknown_credit_rate": 1, "unknown_drop_rate": 0}
UNKNOWN_BEFORE_CREDIT = {"unknown_rate": 1, "unknown_credit_rate": 0, "unknown_drop_rate": 0}
QUIET = {"unknown_rate": 0, "refuse_rate": 0}


def line_for(run: SettlementRun, payout: Payout) -> list[tuple]:
    return list(run.lines.filter(payout=payout).order_by("line_number").values_list("outcome", "payout_settled"))


def edit(content: bytes, old: str, new: str) -> bytes:
    text = content.decode()
    assert text.count(old) == 1, (old, text)
    return text.replace(old, new).encode()


def test_every_outcome_from_the_sandboxs_own_books(sandbox, deliver, buy, settings):
    # given: a payout MTRANS paid whose record the provider then lost (the sandbox's books are reset)…
    gone = deliver(buy("LSAJA", "10000.00"))
    assert (gone.status, gone.provider.code) == (S.SUCCEEDED, "MTRANS")
    sandbox.reset()
    # …payouts MTRANS paid, one of which its file will report with another amount…
    matched = deliver(buy("LSAJA", "20000.00"))
    mismatched = deliver(buy("LSAJA", "30000.00"))
    # …one whose send had an unknown outcome after MTRANS credited it (UNKNOWN), one that stayed
    # unknown through every inquiry (MANUAL_REVIEW), and one MTRANS never credited (UNKNOWN)…
    sandbox.faults({"MTRANS": UNKNOWN_AFTER_CREDIT})
    found = deliver(buy("LSAJA", "15000.00"))
    settings.CEZBEK_UNKNOWN_GRACE_SECONDS = 0
    settings.CEZBEK_RESOLVE_MAX_CHECKS = 0
    review = deliver(buy("LSAJA", "16000.00"))
    from wallets.services import payout_resolve

    assert payout_resolve(payout_id=review.pk) == S.MANUAL_REVIEW
    sandbox.faults({"MTRANS": UNKNOWN_BEFORE_CREDIT})
    never = deliver(buy("LSAJA", "17000.00"))
    assert [p.status for p in (found, never)] == [S.UNKNOWN, S.UNKNOWN]
    # …one MTRANS refused and XENIT paid, which MTRANS then credited as well, and a credit of MTRANS
    # that is nobody's of ours
    breakers_reset()  # three unknown outcomes in a row opened MTRANS's breaker
    sandbox.faults({"MTRANS": {**QUIET, "refuse_rate": 1}})
    twice = deliver(buy("LSAJA", "25000.00"))
    assert (twice.status, twice.provider.code) == (S.SUCCEEDED, "XENIT")
    assert list(twice.attempt_rows.values_list("provider__code", "outcome")) == [("MTRANS", "REFUSED"), ("XENIT", "CREDITED")]
    book_credit(sandbox, provider="MTRANS", client_ref=f"{twice.transaction.kezbek_ref}-MTRANS", wallet="LSAJA", msisdn=twice.msisdn, amount=25000.00)
    book_credit(sandbox, provider="MTRANS", client_ref="KZSTRANGER-MTRANS", wallet="LSAJA", msisdn="628129999999", amount=5000.00)
    name, content = settlement_file(sandbox, "MTRANS")
    assert name == f"mtrans-{utc_today()}.csv"
    # the provider's file reports one payout with another amount and lists one credit twice
    content = edit(content, f"{mismatched.reference},LSAJA,{mismatched.msisdn},30000.00,", f"{mismatched.reference},LSAJA,{mismatched.msisdn},29000.00,")
    matched_line = next(line for line in content.decode().splitlines() if matched.reference in line)
    content += f"{matched_line}\n".encode()
    events_before = PayoutEvent.objects.count()

    # when
    run = settlement_import(provider_code="MTRANS", content=content, file_name=name)

    # then: each line, and the payout the provider lost, has its outcome
    assert run_counts(run=run) == {
        "MATCHED": 1,
        "AMOUNT_MISMATCH": 1,
        "MISSING_AT_PROVIDER": 1,
        "UNKNOWN_TO_CEZBEK": 3,
        "DUPLICATE_AT_PROVIDER": 2,
    }
    assert run.line_count == 7 and run.period_source == "file name"
    assert line_for(run, matched) == [(O.MATCHED, False), (O.DUPLICATE_AT_PROVIDER, False)]
    assert line_for(run, mismatched) == [(O.AMOUNT_MISMATCH, False)]
    assert run.lines.get(payout=mismatched).note == "amount: file 29000.00, payout 30000.00"
    assert line_for(run, gone) == [(O.MISSING_AT_PROVIDER, False)]
    assert line_for(run, twice) == [(O.DUPLICATE_AT_PROVIDER, False)]
    assert "succeeded through XENIT" in run.lines.get(payout=twice).note
    assert line_for(run, never) == []
    stray = run.lines.get(client_ref="KZSTRANGER-MTRANS")
    assert (stray.outcome, stray.payout_id, stray.amount) == (O.UNKNOWN_TO_CEZBEK, None, Decimal("5000.00"))
    # the payouts found paid are SUCCEEDED with the run as their evidence, recorded on the line too
    for payout, was in [(found, S.UNKNOWN), (review, S.MANUAL_REVIEW)]:
        line = run.lines.get(payout=payout)
        assert (line.outcome, line.payout_settled, line.payout_status) == (O.UNKNOWN_TO_CEZBEK, True, was)
        payout.refresh_from_db()
        assert payout.status == S.SUCCEEDED
        assert payout.provider_ref == line.provider_ref and line.provider_ref.startswith("MTR")
        event = payout.events.order_by("id").last()
        assert (event.from_status, event.to_status) == (was, S.SUCCEEDED)
        assert f"settlement run {run.pk}" in event.note and f"line {line.line_number}" in event.note
    assert run.payouts_settled == 2
    assert PayoutEvent.objects.count() == events_before + 2
    # what was not found paid is untouched
    for payout, status in [(never, S.UNKNOWN), (matched, S.SUCCEEDED), (mismatched, S.SUCCEEDED), (twice, S.SUCCEEDED), (gone, S.SUCCEEDED)]:
        payout.refresh_from_db()
        assert payout.status == status
    # XENIT's own file agrees with us about the payout it paid
    xenit = settlement_import(provider_code="XENIT", content=settlement_file(sandbox, "XENIT")[1], file_name=f"xenit-{utc_today()}.csv")
    assert line_for(xenit, twice) == [(O.MATCHED, False)]


def test_the_same_file_twice_is_refused_and_a_corrected_one_doubles_nothing(sandbox, deliver, buy):
    paid = deliver(buy("LSAJA", "20000.00"))
    sandbox.faults({"MTRANS": UNKNOWN_AFTER_CREDIT})
    found = deliver(buy("LSAJA", "15000.00"))
    name, content = settlement_file(sandbox, "MTRANS")
    first = settlement_import(provider_code="MTRANS", content=content, file_name=name)
    assert run_counts(run=first)["UNKNOWN_TO_CEZBEK"] == 1 and first.payouts_settled == 1
    events = PayoutEvent.objects.count()

    # the same bytes again: refused, naming the earlier run; nothing written
    with pytest.raises(Conflict, match=f"already imported as settlement run {first.pk}"):
        settlement_import(provider_code="MTRANS", content=content, file_name="again.csv")
    assert SettlementRun.objects.count() == 1 and PayoutEvent.objects.count() == events

    # a re-issued file (the provider added a trailing blank line): a new run, and the payout found paid
    # before is simply MATCHED now, never settled again
    second = settlement_import(provider_code="MTRANS", content=content + b"\n", file_name=name)
    assert run_counts(run=second) == {**dict.fromkeys(OUTCOMES, 0), "MATCHED": 2}
    assert second.payouts_settled == 0 and PayoutEvent.objects.count() == events
    assert {line.payout_id for line in second.lines.all()} == {paid.pk, found.pk}


def test_a_payout_credited_again_by_the_same_provider_on_another_day_is_a_duplicate(sandbox, deliver, buy):
    paid = deliver(buy("JOSVO", "20000.00"))
    name, content = settlement_file(sandbox, "MTRANS")
    settlement_import(provider_code="MTRANS", content=content, file_name=name)
    # the next day's file lists the same payout with another provider reference: paid twice
    line = next(line for line in content.decode().splitlines() if paid.reference in line)
    later = f"provider_ref,client_ref,wallet,msisdn,amount,fee,status,settled_at\nMTR-AGAIN-1,{line.split(',', 1)[1]}\n"
    run = settlement_import(provider_code="MTRANS", content=later.encode(), file_name="mtrans-2099-01-01.csv")
    dup = run.lines.get()
    assert (dup.outcome, dup.payout_id) == (O.DUPLICATE_AT_PROVIDER, paid.pk)
    assert "already credited payout" in dup.note


def test_gopaid_without_references_is_matched_by_its_own_reference_then_by_msisdn_and_amount(sandbox, deliver, buy):
    # GoPaid carries no client reference: a credited payout is known by GoPaid's ref_code…
    paid = deliver(buy("GPAID", "11000.00"))
    assert (paid.status, paid.provider.code) == (S.SUCCEEDED, "GOPAIDH2H")
    # …and an unknown outcome can never be asked about: MANUAL_REVIEW, credited or not
    sandbox.faults({"GOPAIDH2H": UNKNOWN_AFTER_CREDIT})
    credited = deliver(buy("GPAID", "12000.00"))
    twin_a = deliver(buy("GPAID", "13000.00", msisdn="628131111111"))
    twin_b = deliver(buy("GPAID", "13000.00", msisdn="628131111111"))
    breakers_reset()  # three unknown outcomes in a row opened GoPaid's breaker
    sandbox.faults({"GOPAIDH2H": UNKNOWN_BEFORE_CREDIT})
    not_credited = deliver(buy("GPAID", "14000.00"))
    assert {p.status for p in (credited, twin_a, twin_b, not_credited)} == {S.MANUAL_REVIEW}
    name, content = settlement_file(sandbox, "GOPAIDH2H")
    assert b",," not in content.split(b"\n", 1)[0] and content.count(b"\nGPD") == 4  # four credits, no client_ref

    run = settlement_import(provider_code="GOPAIDH2H", content=content, file_name=name)

    assert run_counts(run=run) == {**dict.fromkeys(OUTCOMES, 0), "MATCHED": 1, "UNKNOWN_TO_CEZBEK": 3}
    assert line_for(run, paid) == [(O.MATCHED, False)]
    # the one credit that can only be this payout settles it
    assert line_for(run, credited) == [(O.UNKNOWN_TO_CEZBEK, True)]
    credited.refresh_from_db()
    assert credited.status == S.SUCCEEDED and "matched by MSISDN and amount" in run.lines.get(payout=credited).note
    # two payouts and two credits alike: nobody can tell which is which, an operator decides
    ambiguous = run.lines.filter(payout__isnull=True).order_by("line_number")
    assert [(line.outcome, line.msisdn, line.payout_settled) for line in ambiguous] == [(O.UNKNOWN_TO_CEZBEK, "628131111111", False)] * 2
    assert f"({twin_a.pk}, {twin_b.pk})" in ambiguous[0].note and "resolve by hand" in ambiguous[0].note
    for payout in (twin_a, twin_b, not_credited):
        payout.refresh_from_db()
        assert payout.status == S.MANUAL_REVIEW


def test_a_found_payout_that_disagrees_with_the_line_is_not_settled(sandbox, deliver, buy):
    sandbox.faults({"MTRANS": UNKNOWN_AFTER_CREDIT})
    found = deliver(buy("LSAJA", "15000.00"))
    name, content = settlement_file(sandbox, "MTRANS")
    content = edit(content, ",15000.00,", ",15000.50,")
    run = settlement_import(provider_code="MTRANS", content=content, file_name=name)
    line = run.lines.get()
    assert (line.outcome, line.payout_id, line.payout_settled) == (O.UNKNOWN_TO_CEZBEK, found.pk, False)
    assert "amount: file 15000.50, payout 15000.00" in line.note
    found.refresh_from_db()
    assert found.status == S.UNKNOWN


def test_the_period_comes_from_the_date_given_then_the_name_then_the_lines(sandbox, deliver, buy):
    paid = deliver(buy("LSAJA", "20000.00"))
    _, content = settlement_file(sandbox, "MTRANS")
    empty = b"provider_ref,client_ref,wallet,msisdn,amount,fee,status,settled_at\n"
    # an empty file named for the day the payout succeeded: the payout is missing at the provider
    named = settlement_import(provider_code="MTRANS", content=empty, file_name=f"mtrans-{utc_today()}.csv")
    assert (named.period_source, f"{named.period_start:%Y-%m-%d}", named.period_end - named.period_start) == ("file name", utc_today(), timedelta(days=1))
    assert line_for(named, paid) == [(O.MISSING_AT_PROVIDER, False)]
    # a date given wins over the name; lines outside the period are reconciled all the same
    given = settlement_import(provider_code="MTRANS", content=content, file_name=f"mtrans-{utc_today()}.csv", settlement_date=date(2001, 1, 1))
    assert (given.period_source, f"{given.period_start:%Y-%m-%d}") == ("date given", "2001-01-01")
    assert line_for(given, paid) == [(O.MATCHED, False)]
    # without a date anywhere: the UTC days of the lines
    lines = settlement_import(provider_code="MTRANS", content=content + b"\n\n", file_name="export.csv")
    assert (lines.period_source, f"{lines.period_start:%Y-%m-%d}") == ("lines", utc_today())
    assert line_for(lines, paid) == [(O.MATCHED, False)]
    # once a file of the provider listed the payout, it is no longer missing on that day
    again = settlement_import(provider_code="MTRANS", content=empty + b"\n", file_name=f"mtrans-{utc_today()}.csv")
    assert run_counts(run=again) == dict.fromkeys(OUTCOMES, 0)
    # the same empty bytes for another day are another day's file, not a repeat
    other_day = settlement_import(provider_code="MTRANS", content=empty, file_name="mtrans-2001-01-02.csv")
    assert other_day.checksum == named.checksum and other_day.pk != named.pk
    # an empty file without a date anywhere is refused
    with pytest.raises(ValidationFailed, match="no lines and its name carries no date"):
        settlement_import(provider_code="MTRANS", content=empty, file_name="export.csv")
    assert SettlementRun.objects.count() == 5


HEADER = "provider_ref,client_ref,wallet,msisdn,amount,fee,status,settled_at"


@pytest.fixture
def unknown_payout(buy, routes):
    """A payout left UNKNOWN at MTRANS (arranged), which a valid first line of each bad file would settle."""
    payout = buy("LSAJA", "15000.00")
    Payout.objects.filter(pk=payout.pk).update(
        status=S.UNKNOWN, provider=routes["MTRANS"], reference=f"{payout.transaction.kezbek_ref}-MTRANS", lease=1
    )
    payout.refresh_from_db()
    return payout


@pytest.mark.parametrize(
    "second_line, header, error",
    [
        ("MTR2,,LSAJA,628120000002,12.345,1500.00,SUCCESS,2026-05-01T10:00:00.000Z", HEADER, "Line 3, column amount: '12.345' is not an amount"),
        ("MTR2,,LSAJA,628120000002,-5.00,1500.00,SUCCESS,2026-05-01T10:00:00.000Z", HEADER, "Line 3, column amount: '-5.00'"),
        ("MTR2,,LSAJA,628120000002,5.00,abc,SUCCESS,2026-05-01T10:00:00.000Z", HEADER, "Line 3, column fee: 'abc' is not a fee"),
        ("MTR2,,LSAJA,628120000002,5.00,1500.00,FAILED,2026-05-01T10:00:00.000Z", HEADER, "Line 3, column status: 'FAILED' is not SUCCESS"),
        ("MTR2,,LSAJA,628120000002,5.00,1500.00,SUCCESS,yesterday", HEADER, "Line 3, column settled_at: 'yesterday'"),
        ("MTR2,,OVO,628120000002,5.00,1500.00,SUCCESS,2026-05-01T10:00:00.000Z", HEADER, "Line 3, column wallet: 'OVO' is not a wallet code"),
        ("MTR2,,LSAJA,0812,5.00,1500.00,SUCCESS,2026-05-01T10:00:00.000Z", HEADER, "Line 3, column msisdn: '0812'"),
        (",,LSAJA,628120000002,5.00,1500.00,SUCCESS,2026-05-01T10:00:00.000Z", HEADER, "Line 3, column provider_ref"),
        ("MTR2,,LSAJA,628120000002,5.00,1500.00,SUCCESS", HEADER, "Line 3: 7 columns, expected 8"),
        ("", "provider_ref,client_ref,wallet,msisdn,amount,fee,settled_at", "Line 1 (header): expected provider_ref,client_ref,wallet,msisdn,amount,fee,status,settled_at (missing status)"),
        ("", "provider_ref,client_ref,wallet,msisdn,fee,amount,status,settled_at", "(columns out of order)"),
    ],
)
def test_a_bad_file_is_refused_naming_line_and_column_and_writes_nothing(unknown_payout, media_root, second_line, header, error):
    first = f"MTR1,{unknown_payout.reference},LSAJA,{unknown_payout.msisdn},15000.00,1500.00,SUCCESS,2026-05-01T09:00:00.000Z"
    content = f"{header}\n{first}\n{second_line}\n".encode()
    with pytest.raises(ValidationFailed) as raised:
        settlement_import(provider_code="MTRANS", content=content, file_name="mtrans-2026-05-01.csv")
    assert error in raised.value.message
    assert (SettlementRun.objects.count(), SettlementLine.objects.count()) == (0, 0)
    unknown_payout.refresh_from_db()
    assert unknown_payout.status == S.UNKNOWN and unknown_payout.events.count() == 1
    assert stored_files(media_root) == []


@pytest.mark.parametrize(
    "provider, content, name, error",
    [
        ("OVOPAY", f"{HEADER}\n".encode(), "x-2026-05-01.csv", "Unknown provider 'OVOPAY' (known: GOPAIDH2H, JOSVOH2H, LSAJAH2H, MTRANS, XENIT)"),
        ("MTRANS", f"{HEADER}\n".encode(), "xenit-2026-05-01.csv", "is XENIT's settlement, not MTRANS's"),
        ("MTRANS", b"", "mtrans-2026-05-01.csv", "The file is empty"),
        ("MTRANS", f"{HEADER}\n".encode("utf-16"), "mtrans-2026-05-01.csv", "not UTF-8"),
    ],
)
def test_unknown_provider_wrong_provider_empty_or_binary_file_is_refused(routes, media_root, provider, content, name, error):
    with pytest.raises(ValidationFailed) as raised:
        settlement_import(provider_code=provider, content=content, file_name=name)
    assert error in raised.value.message
    assert SettlementRun.objects.count() == 0 and stored_files(media_root) == []


def test_the_command_prints_the_contracts_json_and_refuses_bad_input(sandbox, deliver, buy, tmp_path):
    paid = deliver(buy("LSAJA", "20000.00"))
    name, content = settlement_file(sandbox, "MTRANS")
    path = tmp_path / name
    path.write_bytes(content)
    out = StringIO()

    call_command("import_settlement", "mtrans", str(path), "--json", stdout=out)

    document = json.loads(out.getvalue())
    run = SettlementRun.objects.get()
    assert document == {"run": run.pk, "counts": {"MATCHED": 1, "AMOUNT_MISMATCH": 0, "MISSING_AT_PROVIDER": 0, "UNKNOWN_TO_CEZBEK": 0, "DUPLICATE_AT_PROVIDER": 0}}
    assert list(document["counts"]) == OUTCOMES
    assert run.lines.get().payout_id == paid.pk
    # the file is kept as imported
    assert run.file.read() == content
    # bad input: a one-line reason, nothing changed
    with pytest.raises(CommandError, match="already imported as settlement run"):
        call_command("import_settlement", "MTRANS", str(path), "--json", stdout=StringIO())
    with pytest.raises(CommandError, match="Unknown provider 'NOPE'"):
        call_command("import_settlement", "NOPE", str(path), stdout=StringIO())
    with pytest.raises(CommandError, match="cannot read"):
        call_command("import_settlement", "MTRANS", str(tmp_path / "absent.csv"), stdout=StringIO())
    with pytest.raises(CommandError, match="--date 'May 1' is not a date"):
        call_command("import_settlement", "MTRANS", str(path), "--date", "May 1", stdout=StringIO())
    assert SettlementRun.objects.count() == 1
    # the human output names the counts
    path.write_bytes(content + b"\n")
    human = StringIO()
    call_command("import_settlement", "MTRANS", str(path), stdout=human)
    assert "MATCHED                1" in human.getvalue()
