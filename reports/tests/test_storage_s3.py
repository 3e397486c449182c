"""Settlement files and invoices go through Django's default storage: S3 in production, here a real moto
server (cezbek/testing/aws.py) configured as settings.py configures a bucket."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from cezbek.errors import ValidationFailed
from reports.models import SettlementRun
from reports.services import invoice_generate, settlement_import

pytestmark = [pytest.mark.postgres]

BUCKET = "cezbek-reports-test"
HEADER = b"provider_ref,client_ref,wallet,msisdn,amount,fee,status,settled_at\n"


@pytest.fixture
def s3(aws, settings):
    client = aws.client("s3")
    client.create_bucket(Bucket=BUCKET)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {"bucket_name": BUCKET, "endpoint_url": aws.endpoint_url, "default_acl": None, "file_overwrite": False, "querystring_auth": True},
        },
    }
    return client


def keys(client) -> list[str]:
    return sorted(item["Key"] for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def test_an_invoice_is_stored_in_the_bucket_mailed_and_downloaded_from_it(s3, make_partner, client, django_user_model, media_root):
    lajada, _ = make_partner("LAJADA", email="finance@lajada.id")
    month = (timezone.now() - timedelta(days=62)).date().replace(day=1)

    invoice = invoice_generate(partner=lajada, month=month).invoice

    assert keys(s3) == [invoice.file.name]
    body = s3.get_object(Bucket=BUCKET, Key=invoice.file.name)["Body"].read().decode()
    assert body.startswith("invoice,partner,") and f"CZB-LAJADA-{month:%Y-%m},LAJADA," in body
    assert mail.outbox[0].attachments[0][1] == body
    user = django_user_model.objects.create_user("fiona", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name="Finance"))
    client.force_login(user)
    response = client.get(reverse("admin:reports_invoice_download", args=[invoice.pk]))
    assert b"".join(response.streaming_content).decode() == body
    assert not media_root.exists()  # nothing went to local files


def test_a_settlement_file_is_kept_in_the_bucket_and_a_bad_one_leaves_nothing(s3, routes, wallets):
    with pytest.raises(ValidationFailed, match="Line 2, column amount"):
        settlement_import(provider_code="MTRANS", content=HEADER + b"MTR1,,LSAJA,628120000001,1.234,0.00,SUCCESS,2026-05-01T00:00:00Z\n", file_name="mtrans-2026-05-01.csv")
    assert keys(s3) == [] and SettlementRun.objects.count() == 0

    run = settlement_import(provider_code="MTRANS", content=HEADER, file_name="mtrans-2026-05-01.csv")

    assert keys(s3) == [run.file.name] and run.file.name.startswith("settlements/2026/05/mtrans-2026-05-01-")
    assert s3.get_object(Bucket=BUCKET, Key=run.file.name)["Body"].read() == HEADER
