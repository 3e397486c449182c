"""Batch uploads in the admin (DOMAIN.md §9): an operator uploads a partner's CSV, follows it, downloads the results."""

import csv
import io

import pytest
from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile

from cashback.models import Batch, BatchRow, Transaction
from cashback.tasks import batch_chunk

HEADER = "partner_ref,msisdn,email,quantity,amount,wallet\n"
ADD = "/admin/cashback/batch/add/"


@pytest.fixture
def setup(wallets, ladder, global_rule, make_partner):
    make_partner("TOKMED")
    lajada, _ = make_partner("LAJADA")
    return lajada


def upload(client, partner, content: bytes, name="purchases.csv"):
    return client.post(ADD, {"partner": partner.pk, "file": SimpleUploadedFile(name, content, content_type="text/csv")})


def test_operator_uploads_a_partners_file_and_downloads_the_results(admin_client, admin_user, setup):
    # given the upload form, offering the active partners
    page = admin_client.get(ADD)
    assert page.status_code == 200
    html = page.content.decode()
    assert "LAJADA" in html and "TOKMED" in html and 'type="file"' in html
    # when an operator uploads a file for LAJADA
    body = HEADER + "A1,628118770510,,2,750000.00,LSAJA\nA2,628118770511,,1,-1,LSAJA\n"
    response = upload(admin_client, setup, body.encode())
    # then a QUEUED batch exists for LAJADA, from the admin, by that operator
    batch = Batch.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/admin/cashback/batch/{batch.pk}/change/"
    assert (batch.partner, batch.source, batch.uploaded_by, batch.filename, batch.total, batch.status) == (
        setup, "ADMIN", admin_user, "purchases.csv", 2, "QUEUED"
    )
    # and once the worker ran it, its page shows the progress and the results link
    for n in range(batch.chunks):
        batch_chunk(batch.pk, n)
    page = admin_client.get(f"/admin/cashback/batch/{batch.pk}/change/").content.decode()
    assert '<progress value="2" max="2"' in page and "2 / 2 (100%)" in page
    assert f"/admin/cashback/batch/{batch.pk}/results.csv" in page
    assert "Save" not in page  # read-only
    listing = admin_client.get("/admin/cashback/batch/").content.decode()
    assert batch.public_id in listing and "2 / 2 (100%)" in listing
    download = admin_client.get(f"/admin/cashback/batch/{batch.pk}/results.csv")
    assert download.status_code == 200 and download["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(b"".join(download.streaming_content).decode())))
    txn = Transaction.objects.get(partner_ref="A1")
    assert txn.partner == setup
    assert [(r["row"], r["outcome"], r["kezbek_ref"], r["cashback"], r["error_field"]) for r in rows] == [
        ("2", "accepted", txn.kezbek_ref, "7500.00", ""),
        ("3", "failed", "", "", "amount"),
    ]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"partner_ref,msisdn,amount\nA,628118770510,100\n", "missing: quantity, wallet."),
        (b"", "The submitted file is empty."),
        (HEADER.encode(), "The file has a header but no purchase rows."),
    ],
)
def test_a_file_that_cannot_be_taken_is_a_form_error_and_nothing_is_created(admin_client, setup, content, message):
    response = upload(admin_client, setup, content)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert Batch.objects.count() == 0 and BatchRow.objects.count() == 0


def test_inactive_partners_are_not_offered(admin_client, setup):
    setup.active = False
    setup.save()
    response = upload(admin_client, setup, (HEADER + "A1,628118770510,,2,750000.00,LSAJA\n").encode())
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert Batch.objects.count() == 0


def test_staff_without_permissions_can_neither_upload_nor_download(client, setup, admin_client):
    upload(admin_client, setup, (HEADER + "A1,628118770510,,2,750000.00,LSAJA\n").encode())
    batch = Batch.objects.get()
    clerk = User.objects.create_user("clerk", password="pw", is_staff=True)
    client.force_login(clerk)
    assert client.get(ADD).status_code == 403
    assert client.get(f"/admin/cashback/batch/{batch.pk}/results.csv").status_code == 403
    clerk.user_permissions.add(Permission.objects.get(codename="view_batch"))
    clerk = User.objects.get(pk=clerk.pk)
    client.force_login(clerk)
    assert client.get(f"/admin/cashback/batch/{batch.pk}/results.csv").status_code == 200
    assert client.get(ADD).status_code == 403


def test_resume_action_queues_unfinished_batches_again(admin_client, setup, django_capture_on_commit_callbacks):
    upload(admin_client, setup, (HEADER + "A1,628118770510,,2,750000.00,LSAJA\n").encode())
    batch = Batch.objects.get()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post("/admin/cashback/batch/", {"action": "resume", "_selected_action": [batch.pk]})
    assert response.status_code == 302
    assert len(callbacks) == 1
    batch_chunk(batch.pk, 0)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        admin_client.post("/admin/cashback/batch/", {"action": "resume", "_selected_action": [batch.pk]})
    assert callbacks == []  # a DONE batch has nothing left to do
