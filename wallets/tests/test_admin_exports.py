"""CSV exports of transactions and payouts from the admin: exactly the changelist's rows as filtered
and searched, streamed, with plain decimals and ISO times, and only for staff allowed to export.
The operators' payout actions need wallets.change_payout, whoever else may look or export."""

import csv
import io
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.core.signals import request_finished
from django.db import close_old_connections
from django.http import StreamingHttpResponse
from django.urls import reverse

from cashback.models import Transaction
from cashback.tests.bulk import STATUS_CYCLE, books_create, kezbek_ref_of, msisdn_of
from cezbek import exports
from wallets.models import Payout, PayoutEvent, Provider

pytestmark = pytest.mark.postgres  # the export's own path is COPY on PostgreSQL

TRANSACTIONS = reverse("admin:cashback_transaction_changelist")
PAYOUTS = reverse("admin:wallets_payout_changelist")
EXPORT_TRANSACTIONS = reverse("admin:cashback_transaction_export")
EXPORT_PAYOUTS = reverse("admin:wallets_payout_export")
JAKARTA = ZoneInfo("Asia/Jakarta")
SINCE = datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=JAKARTA)  # row i: SINCE + i minutes
TRANSACTION_HEADER = [
    "kezbek_ref", "partner", "partner_ref", "created_at", "msisdn", "wallet", "quantity", "amount", "rule",
    "cashback", "reward", "total", "tier", "payout_id", "payout_status",
]
PAYOUT_HEADER = [
    "payout_id", "kezbek_ref", "partner", "msisdn", "wallet", "amount", "status", "provider", "reference",
    "provider_ref", "fee", "dearest_fee", "saving", "flags", "checks", "created_at", "updated_at",
]


@pytest.fixture
def books(db, make_partner, wallets, ladder):
    """300 transactions (cashback/tests/bulk.py): LAJADA even, TOKMED odd; wallets LSAJA, GPAID, JOSVO by i % 3;
    payouts on MTRANS (even i) and XENIT (odd i), none for i % 10 == 0."""
    partners = [make_partner("LAJADA")[0], make_partner("TOKMED")[0]]
    providers = [
        Provider.objects.create(code="MTRANS", name="Middletrans", kind=Provider.Kind.AGGREGATOR),
        Provider.objects.create(code="XENIT", name="Xenit", kind=Provider.Kind.AGGREGATOR),
    ]
    ids = books_create(
        start=0, count=300, partners=partners, wallets=list(wallets.values()), tier=ladder["BRONZE"], since=SINCE, providers=providers
    )
    return {"ids": ids, "partners": partners, "providers": providers, "wallets": wallets}


def staff(client, django_user_model, username: str, codenames: list[str]):
    user = django_user_model.objects.create_user(username, password="x", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(user)
    return client


@pytest.fixture
def finance(client, django_user_model):
    """Looks at the books and exports them (the Finance group's share of these admins)."""
    return staff(client, django_user_model, "finance", ["view_transaction", "export_transaction", "view_payout", "export_payout"])


@pytest.fixture
def looker(client, django_user_model):
    """May look at transactions and payouts, not export them."""
    return staff(client, django_user_model, "looker", ["view_transaction", "view_payout"])


def export(client, url, params=None) -> tuple[StreamingHttpResponse, list[bytes], list[list[str]]]:
    response = client.get(url, params or {})
    assert response.status_code == 200, response
    blocks = list(response.streaming_content)
    rows = list(csv.reader(io.StringIO(b"".join(blocks).decode("utf-8"))))
    return response, blocks, rows


# --- transactions ---------------------------------------------------------------------------------


def test_the_export_is_exactly_the_filtered_and_searched_changelist(finance, books):
    tokmed, gpaid = books["partners"][1], books["wallets"]["GPAID"]
    params = {"partner__id__exact": tokmed.pk, "wallet__id__exact": gpaid.pk, "payout_status": "HELD", "o": "11"}
    listed = finance.get(TRANSACTIONS, params)
    assert 'class="export-csv"' in listed.content.decode()
    expected = [i for i in range(300) if i % 2 == 1 and i % 3 == 1 and i % 5 == 4]  # TOKMED, GPAID, HELD
    assert [t.kezbek_ref for t in listed.context["cl"].result_list] == [kezbek_ref_of(i) for i in expected]  # by created_at asc

    response, blocks, rows = export(finance, EXPORT_TRANSACTIONS, params)

    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="transactions-20')
    assert rows[0] == TRANSACTION_HEADER
    assert [row[0] for row in rows[1:]] == [kezbek_ref_of(i) for i in expected]  # same rows, same order
    # one row, cell by cell: i = 19 → amount 10,019.00, cashback 1 % = 100.19, reward 5,000.00 (5th), HELD
    row = dict(zip(TRANSACTION_HEADER, rows[1 + expected.index(19)]))
    payout = Payout.objects.get(transaction__kezbek_ref=kezbek_ref_of(19))
    assert row == {
        "kezbek_ref": kezbek_ref_of(19), "partner": "TOKMED", "partner_ref": "INV/19",
        "created_at": "2026-03-01T08:49:15+07:00",  # SINCE + 19 min, local time with its offset, to the second
        "msisdn": msisdn_of(19), "wallet": "GPAID", "quantity": "2", "amount": "10019.00", "rule": "",
        "cashback": "100.19", "reward": "5000.00", "total": "5100.19", "tier": "BRONZE",
        "payout_id": str(payout.pk), "payout_status": "HELD",
    }


def test_the_export_follows_search_and_date_drill_down(finance, books):
    _, _, rows = export(finance, EXPORT_TRANSACTIONS, {"q": f"TOKMED 0{msisdn_of(7)[2:]}"})
    assert [r[0] for r in rows[1:]] == [kezbek_ref_of(7)]
    # 1 March 08:30 + i minutes: the 2nd of March in Jakarta has none of the 300 (they end at 13:29 on the 1st)
    _, _, rows = export(finance, EXPORT_TRANSACTIONS, {"created_at__year": 2026, "created_at__month": 3, "created_at__day": 2})
    assert rows == [TRANSACTION_HEADER]
    _, _, rows = export(finance, EXPORT_TRANSACTIONS, {"created_at__year": 2026, "created_at__month": 3, "created_at__day": 1})
    assert len(rows) == 301
    _, _, rows = export(finance, EXPORT_TRANSACTIONS, {"payout_status": "NONE"})
    assert {r[0] for r in rows[1:]} == {kezbek_ref_of(i) for i in range(0, 300, 10)}
    assert {(r[13], r[14]) for r in rows[1:]} == {("", "")}  # no payout: empty cells


def test_the_export_has_every_page_and_streams_in_blocks(finance, books, monkeypatch):
    monkeypatch.setattr(exports, "BLOCK_BYTES", 4096)
    response, blocks, rows = export(finance, EXPORT_TRANSACTIONS)
    assert len(rows) == 301 and len({r[0] for r in rows[1:]}) == 300  # the changelist shows 100 a page
    assert [r[0] for r in rows[1:]] == [kezbek_ref_of(i) for i in range(299, -1, -1)]  # newest first, as listed
    assert response.streaming and len(blocks) > 5  # handed over as it is read, not built whole
    # Money and times cell by cell against the database, for every row
    for row in rows[1:]:
        txn = Transaction.objects.get(kezbek_ref=row[0])
        assert (Decimal(row[7]), Decimal(row[9]), Decimal(row[11])) == (txn.amount, txn.cashback, txn.total)
        assert datetime.fromisoformat(row[3]) == txn.created_at.replace(microsecond=0)


def test_both_ways_of_writing_give_the_same_csv(finance, books, monkeypatch):
    """COPY on PostgreSQL, the iterator (SQLite, `make run`) elsewhere: the same cells."""
    for url, params in [
        (EXPORT_TRANSACTIONS, {}),
        (EXPORT_TRANSACTIONS, {"wallet__id__exact": books["wallets"]["JOSVO"].pk}),
        (EXPORT_PAYOUTS, {}),
        (EXPORT_PAYOUTS, {"status__exact": "HELD"}),
    ]:
        _, _, by_copy = export(finance, url, params)
        monkeypatch.setattr(exports, "USE_COPY", False)
        _, _, by_iterator = export(finance, url, params)
        monkeypatch.setattr(exports, "USE_COPY", True)
        assert by_copy == by_iterator and len(by_copy) > 1, (url, params)


def test_reading_times_after_an_export_is_still_right(finance, books):
    """The export sets the session's time zone for its own transaction only."""
    export(finance, EXPORT_TRANSACTIONS)
    txn = Transaction.objects.get(kezbek_ref=kezbek_ref_of(1))
    assert txn.created_at == SINCE + timedelta(minutes=1)


def test_a_download_abandoned_midway_leaves_the_connection_as_it_was(rf, django_user_model, books, monkeypatch):
    monkeypatch.setattr(exports, "BLOCK_BYTES", 1024)
    request = rf.get(EXPORT_TRANSACTIONS)
    request.user = django_user_model.objects.create_superuser("boss", password="x")
    response = admin.site._registry[Transaction].export_view(request)
    blocks = iter(response.streaming_content)
    header, first = next(blocks), next(blocks)
    # What the web server does when the browser goes away: it closes the response, and the COPY is
    # cancelled. (Django's close_old_connections at "request finished" is held off, as the test client
    # does, or it would close the test's own connection.)
    request_finished.disconnect(close_old_connections)
    try:
        response.close()
    finally:
        request_finished.connect(close_old_connections)
    assert header.startswith(b"kezbek_ref,") and first.startswith(kezbek_ref_of(299).encode())
    txn = Transaction.objects.get(kezbek_ref=kezbek_ref_of(1))  # the same connection, usable, in UTC again
    assert txn.created_at == SINCE + timedelta(minutes=1)
    assert len(list(csv.reader(io.StringIO(b"".join(admin.site._registry[Transaction].export_view(request)).decode())))) == 301


# --- payouts --------------------------------------------------------------------------------------


def test_payout_export_is_exactly_the_filtered_changelist(finance, books):
    mtrans = books["providers"][0]
    params = {"status__exact": "HELD", "provider__id__exact": mtrans.pk, "age": "gt24h"}
    listed = finance.get(PAYOUTS, params)
    expected = list(listed.context["cl"].queryset.values_list("pk", flat=True))
    assert expected == list(
        Payout.objects.filter(status="HELD", provider=mtrans).order_by("-id").values_list("pk", flat=True)
    ) and len(expected) == 30  # i % 5 == 4, even i (MTRANS): 30 of 300

    response, _, rows = export(finance, EXPORT_PAYOUTS, params)
    assert response["Content-Disposition"].startswith('attachment; filename="payouts-20')
    assert rows[0] == PAYOUT_HEADER
    assert [int(r[0]) for r in rows[1:]] == expected
    payout = Payout.objects.select_related("transaction").get(pk=expected[0])
    row = dict(zip(PAYOUT_HEADER, rows[1]))
    i = int(payout.transaction.partner_ref.split("/")[1])
    assert row == {
        "payout_id": str(payout.pk), "kezbek_ref": kezbek_ref_of(i), "partner": "LAJADA", "msisdn": msisdn_of(i),
        "wallet": ["LSAJA", "GPAID", "JOSVO"][i % 3], "amount": str(payout.amount), "status": "HELD", "provider": "MTRANS",
        "reference": f"{kezbek_ref_of(i)}-MTRANS", "provider_ref": "", "fee": "1000.00", "dearest_fee": "1500.00",
        "saving": "500.00", "flags": "velocity", "checks": "0",
        "created_at": (SINCE + timedelta(minutes=i)).replace(microsecond=0).isoformat(),
        "updated_at": payout.updated_at.astimezone(JAKARTA).replace(microsecond=0).isoformat(),
    }
    assert STATUS_CYCLE[i % 5] == "HELD"


def test_payout_export_of_a_search_that_finds_nothing_is_the_header(finance, books):
    _, _, rows = export(finance, EXPORT_PAYOUTS, {"q": "INV/10"})  # i = 10 earned nothing: no payout
    assert rows == [PAYOUT_HEADER]


def test_bad_filter_parameters_go_back_to_the_changelist(finance, books):
    response = finance.get(EXPORT_PAYOUTS, {"no_such_field": "1"})
    assert response.status_code == 302 and response.url == f"{PAYOUTS}?e=1"


# --- who may export -----------------------------------------------------------------------------


def test_without_the_export_permission_there_is_no_button_and_no_export(looker, books):
    for changelist, export_url in [(TRANSACTIONS, EXPORT_TRANSACTIONS), (PAYOUTS, EXPORT_PAYOUTS)]:
        page = looker.get(changelist)
        assert page.status_code == 200
        assert "Export CSV" not in page.content.decode() and export_url not in page.content.decode()
        assert looker.get(export_url).status_code == 403


def test_the_export_permission_without_view_is_not_enough(client, django_user_model, books):
    staff(client, django_user_model, "exporter", ["export_transaction"])
    assert client.get(EXPORT_TRANSACTIONS).status_code == 403


def test_anonymous_visitors_are_sent_to_log_in(client, books):
    response = client.get(EXPORT_TRANSACTIONS)
    assert response.status_code == 302 and "/login/" in response.url


# --- who may act on payouts -------------------------------------------------------------------------


def test_payout_actions_need_the_change_permission(client, django_user_model, books, monkeypatch):
    monkeypatch.setattr("wallets.services.payout_enqueue", lambda **kw: None)  # no broker here
    failed = Payout.objects.filter(status="FAILED").order_by("pk")
    first, second = failed[0], failed[1]
    # Finance: may look and export, not act
    staff(client, django_user_model, "finance", ["view_payout", "export_payout"])
    page = client.get(PAYOUTS).content.decode()
    assert "retry_payouts" not in page and "Export CSV" in page
    client.post(PAYOUTS, {"action": "retry_payouts", ACTION_CHECKBOX_NAME: [first.pk]})
    first.refresh_from_db()
    assert first.status == "FAILED" and not PayoutEvent.objects.filter(payout=first).exists()
    # Operations: wallets.change_payout, and nothing else needed
    staff(client, django_user_model, "operations", ["view_payout", "change_payout"])
    page = client.get(PAYOUTS).content.decode()
    assert "retry_payouts" in page and "Export CSV" not in page
    response = client.post(PAYOUTS, {"action": "retry_payouts", ACTION_CHECKBOX_NAME: [second.pk]})
    assert response.status_code == 302
    second.refresh_from_db()
    assert second.status == "PENDING"
    assert list(PayoutEvent.objects.filter(payout=second).values_list("from_status", "to_status", "actor__username")) == [
        ("FAILED", "PENDING", "operations")
    ]
