"""Finance in the admin: upload a settlement file, read the run by outcome, download the mismatches and
the file; download and re-send invoices. Through the test client, with the staff roles of cezbek/roles.py."""

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Group
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from reports.models import Invoice, SettlementLine, SettlementRun
from reports.selectors import MISMATCH_COLUMNS
from reports.services import invoice_generate
from reports.tests.conftest import book_credit, settlement_file, stored_files
from wallets.models import Payout

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ADD = reverse("admin:reports_settlementrun_add")
S = Payout.Status
O = SettlementLine.Outcome


def staff(django_user_model, name: str, group: str):
    user = django_user_model.objects.create_user(name, password="x", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def finance(client, django_user_model):
    user = staff(django_user_model, "fiona", "Finance")
    client.force_login(user)
    return user


@pytest.fixture
def operations(client, django_user_model):
    user = staff(django_user_model, "oscar", "Operations")
    client.force_login(user)
    return user


@pytest.fixture
def books(sandbox, deliver, buy):
    """MTRANS's file of today: one payout it paid, one found paid (UNKNOWN), a stranger's credit."""
    paid = deliver(buy("LSAJA", "20000.00"))
    sandbox.faults({"MTRANS": {"unknown_rate": 1, "unknown_credit_rate": 1, "unknown_drop_rate": 0}})
    found = deliver(buy("LSAJA", "15000.00"))
    assert found.status == S.UNKNOWN
    book_credit(sandbox, provider="MTRANS", client_ref="KZSTRANGER-MTRANS", wallet="LSAJA", msisdn="628129999999", amount=5000.00)
    name, content = settlement_file(sandbox, "MTRANS")
    return {"paid": paid, "found": found, "name": name, "content": content}


def upload(client, name: str, content: bytes, **fields):
    return client.post(ADD, {"provider": "MTRANS", "file": SimpleUploadedFile(name, content, content_type="text/csv"), **fields})


def test_finance_uploads_a_file_and_reads_the_run_by_outcome(client, finance, books):
    assert client.get(ADD).status_code == 200

    response = upload(client, books["name"], books["content"])

    run = SettlementRun.objects.get()
    assert response.status_code == 302 and response.url == reverse("admin:reports_settlementrun_change", args=[run.pk])
    assert run.imported_by == finance and run.file_name == books["name"]
    # the payout found paid is SUCCEEDED, the clerk named in its history
    found = Payout.objects.get(pk=books["found"].pk)
    event = found.events.order_by("id").last()
    assert (found.status, event.to_status, event.actor) == (S.SUCCEEDED, S.SUCCEEDED, finance)
    # the run's page: counts per outcome, every line…
    page = client.get(response.url)
    assert page.status_code == 200
    counts = dict(page.context["counts"])
    assert counts == {"MATCHED": 1, "AMOUNT_MISMATCH": 0, "MISSING_AT_PROVIDER": 0, "UNKNOWN_TO_CEZBEK": 2, "DUPLICATE_AT_PROVIDER": 0}
    html = page.content.decode()
    for reference in (books["paid"].reference, found.reference, "KZSTRANGER-MTRANS"):
        assert reference in html
    assert "Download mismatches CSV (2)" in html
    # …or only the lines of one outcome
    unknown = client.get(response.url, {"outcome": "UNKNOWN_TO_CEZBEK"})
    assert [line.client_ref for line in unknown.context["page"]] == [found.reference, "KZSTRANGER-MTRANS"]
    assert books["paid"].reference not in unknown.content.decode()
    # the run's money and evidence are read-only: no form to post, nothing to delete
    assert b'name="_save"' not in page.content
    assert client.post(reverse("admin:reports_settlementrun_delete", args=[run.pk]), {"post": "yes"}).status_code == 403
    assert SettlementRun.objects.count() == 1


def test_the_mismatches_download_is_every_line_not_matched_and_the_file_is_as_imported(client, finance, books):
    upload(client, books["name"], books["content"])
    run = SettlementRun.objects.get()

    response = client.get(reverse("admin:reports_settlementrun_mismatches", args=[run.pk]))

    assert response.status_code == 200 and response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="settlement-run-{run.pk}-mtrans-mismatches.csv"'
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert list(rows[0]) == MISMATCH_COLUMNS
    found = books["found"]
    assert [(r["outcome"], r["client_ref"], r["amount"], r["payout"], r["payout_status"], r["payout_settled"]) for r in rows] == [
        ("UNKNOWN_TO_CEZBEK", found.reference, "15000.00", str(found.pk), "UNKNOWN", "yes"),
        ("UNKNOWN_TO_CEZBEK", "KZSTRANGER-MTRANS", "5000.00", "", "", "no"),
    ]
    assert rows[0]["kezbek_ref"] == found.transaction.kezbek_ref and rows[1]["note"] == "no payout of ours has this reference"
    original = client.get(reverse("admin:reports_settlementrun_file", args=[run.pk]))
    assert b"".join(original.streaming_content) == books["content"]


def test_a_bad_upload_shows_the_line_and_column_and_imports_nothing(client, finance, books, media_root):
    content = books["content"].replace(b",20000.00,", b",20000.005,")
    response = upload(client, books["name"], content)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Nothing was imported" in html and "Line 2, column amount: &#x27;20000.005&#x27; is not an amount" in html
    assert SettlementRun.objects.count() == 0 and SettlementLine.objects.count() == 0 and stored_files(media_root) == []
    assert Payout.objects.get(pk=books["found"].pk).status == S.UNKNOWN
    # the same file twice: the second upload is refused, naming the first run
    upload(client, books["name"], books["content"])
    again = upload(client, books["name"], books["content"])
    assert "already imported as settlement run" in again.content.decode() and SettlementRun.objects.count() == 1


def test_operations_may_look_but_only_finance_imports(client, operations, books):
    assert client.get(ADD).status_code == 403
    assert upload(client, books["name"], books["content"]).status_code == 403
    assert SettlementRun.objects.count() == 0
    assert client.get(reverse("admin:reports_settlementrun_changelist")).status_code == 200


def test_the_runs_list_shows_counts_per_outcome(client, finance, books):
    upload(client, books["name"], books["content"])
    response = client.get(reverse("admin:reports_settlementrun_changelist"))
    assert response.status_code == 200
    row = response.context["cl"].result_list[0]
    assert (row.n_MATCHED, row.n_UNKNOWN_TO_CEZBEK, row.n_MISSING_AT_PROVIDER, row.payouts_settled) == (1, 2, 0, 1)


def test_invoices_are_downloaded_and_sent_again_from_the_admin(client, finance, make_partner, django_user_model):
    lajada, _ = make_partner("LAJADA", email="finance@lajada.id")
    month = (timezone.now() - timedelta(days=62)).date().replace(day=1)
    invoice = invoice_generate(partner=lajada, month=month).invoice
    assert invoice.transactions == 0 and invoice.cashback == Decimal("0.00")
    mail.outbox.clear()

    response = client.get(reverse("admin:reports_invoice_download", args=[invoice.pk]))
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="cezbek-invoice-LAJADA-{month:%Y-%m}.csv"'
    assert b"".join(response.streaming_content) == invoice.file.open("rb").read()
    listing = client.get(reverse("admin:reports_invoice_changelist"))
    assert reverse("admin:reports_invoice_download", args=[invoice.pk]) in listing.content.decode()
    page = client.get(reverse("admin:reports_invoice_change", args=[invoice.pk]))
    assert page.status_code == 200 and b'name="_save"' not in page.content  # figures are read-only
    assert reverse("admin:reports_invoice_download", args=[invoice.pk]) in page.content.decode()

    client.post(reverse("admin:reports_invoice_changelist"), {"action": "send_again", ACTION_CHECKBOX_NAME: [invoice.pk]})
    assert [m.to for m in mail.outbox] == [["finance@lajada.id"]]
    # operations may see invoices but not send them
    client.force_login(staff(django_user_model, "oscar", "Operations"))
    client.post(reverse("admin:reports_invoice_changelist"), {"action": "send_again", ACTION_CHECKBOX_NAME: [invoice.pk]})
    assert len(mail.outbox) == 1
    assert Invoice.objects.count() == 1
