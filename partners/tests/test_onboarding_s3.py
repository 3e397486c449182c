"""Partner onboarding in the admin: the logo goes through the partner form into the default file storage,
S3 (a real moto server, cezbek/testing/aws.py) when a bucket is configured, local files otherwise."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.files.storage import FileSystemStorage, default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from partners.models import LOGO_MAX_BYTES, Partner, PartnerCredential

BUCKET = "cezbek-media-test"
BASE_DIR = Path(__file__).resolve().parents[2]


def admin_url(view: str, *args) -> str:
    return reverse(f"admin:partners_partner_{view}", args=args)


def png(colour=(200, 30, 30), size=(48, 24)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def logo_upload(content: bytes, name: str = "acme.png", content_type: str = "image/png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type=content_type)


def partner_form(**fields) -> dict:
    """The add form as an operator fills it in (no credentials yet: the inline is empty)."""
    return {
        "code": "ACME",
        "name": "Acme Mart",
        "active": "on",
        "email": "ops@acme.id",
        "credentials-TOTAL_FORMS": "0",
        "credentials-INITIAL_FORMS": "0",
        "credentials-MIN_NUM_FORMS": "0",
        "credentials-MAX_NUM_FORMS": "1000",
        **fields,
    }


def change_form(partner: Partner, **fields) -> dict:
    credentials = list(partner.credentials.order_by("-created_at"))
    data = {
        "code": partner.code,
        "name": partner.name,
        "active": "on" if partner.active else "",
        "email": partner.email,
        "webhook_url": partner.webhook_url or "",
        "credentials-TOTAL_FORMS": str(len(credentials)),
        "credentials-INITIAL_FORMS": str(len(credentials)),
        "credentials-MIN_NUM_FORMS": "0",
        "credentials-MAX_NUM_FORMS": "1000",
    }
    for i, credential in enumerate(credentials):
        data[f"credentials-{i}-id"] = str(credential.pk)
        data[f"credentials-{i}-partner"] = str(partner.pk)
    return {**data, **fields}


def settings_storage(env: dict) -> dict:
    """STORAGES["default"] as cezbek/settings.py builds it from this environment (a fresh process)."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"CEZBEK_S3_BUCKET", "AWS_STORAGE_BUCKET_NAME", "AWS_S3_ENDPOINT_URL"}
    }
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json; from django.conf import settings; print(json.dumps(settings.STORAGES['default']))",
        ],
        env={**clean, "DJANGO_SETTINGS_MODULE": "cezbek.settings", **env},
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def media(settings, tmp_path):
    """Local files under a directory of this test's own."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def s3(aws, settings, media, tmp_path):
    """The default storage on S3, configured exactly as settings.py does with a bucket named, on the moto server."""
    storage = settings_storage(
        {"CEZBEK_S3_BUCKET": BUCKET, "AWS_S3_ENDPOINT_URL": aws.endpoint_url, "CEZBEK_VAR_DIR": str(tmp_path)}
    )
    assert storage["BACKEND"] == "storages.backends.s3.S3Storage"
    assert storage["OPTIONS"]["endpoint_url"] == aws.endpoint_url
    client = aws.client("s3")
    client.create_bucket(Bucket=BUCKET)
    settings.STORAGES = {**settings.STORAGES, "default": storage}
    return client


def bucket_keys(client) -> list[str]:
    return sorted(item["Key"] for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def served(response) -> bytes:
    return b"".join(response.streaming_content)


# --- S3 -------------------------------------------------------------------------------------------


def test_a_logo_uploaded_in_the_add_form_is_stored_in_s3(ops, s3, media):
    logo = png()
    # when an operator creates a partner with its logo
    response = ops.post(admin_url("add"), partner_form(logo=logo_upload(logo)))
    # then the partner is stored, and its logo is an object in the bucket holding the uploaded bytes
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    acme = Partner.objects.get(code="ACME")
    assert acme.logo.name.startswith("partners/ACME/logo-") and acme.logo.name.endswith(".png")
    assert bucket_keys(s3) == [acme.logo.name]
    stored = s3.get_object(Bucket=BUCKET, Key=acme.logo.name)
    assert stored["Body"].read() == logo
    assert stored["ContentType"] == "image/png"
    # and nothing was written to local files
    assert not Path(media).exists() or not any(Path(media).rglob("*"))
    # and the admin shows it, served from the bucket
    listing = ops.get(admin_url("changelist")).content.decode()
    logo_url = admin_url("logo", acme.pk)
    assert f'<img src="{logo_url}?v=' in listing
    image = ops.get(logo_url)
    assert image.status_code == 200 and image["Content-Type"] == "image/png"
    assert served(image) == logo


def test_a_new_logo_in_the_change_form_replaces_the_shown_one(ops, s3, partner):
    lajada, _ = partner
    first, second = png((10, 120, 10)), png((10, 10, 160), size=(64, 32))
    change = admin_url("change", lajada.pk)
    assert ops.post(change, change_form(lajada, logo=logo_upload(first, "lajada.png"))).status_code == 302
    lajada.refresh_from_db()
    first_key = lajada.logo.name
    # when the operator uploads another logo
    response = ops.post(change, change_form(lajada, logo=logo_upload(second, "lajada-2024.PNG")))
    # then the partner points to a new object holding the new bytes, and that is what the admin serves
    assert response.status_code == 302
    lajada.refresh_from_db()
    assert lajada.logo.name != first_key and lajada.logo.name.endswith(".png")
    assert s3.get_object(Bucket=BUCKET, Key=lajada.logo.name)["Body"].read() == second
    assert served(ops.get(admin_url("logo", lajada.pk))) == second
    page = ops.get(change).content.decode()
    assert f'src="{admin_url("logo", lajada.pk)}?v=' in page
    # when they tick "remove": the partner has no logo, and the logo URL answers 404
    assert ops.post(change, change_form(lajada, **{"logo-clear": "on"})).status_code == 302
    lajada.refresh_from_db()
    assert not lajada.logo
    assert ops.get(admin_url("logo", lajada.pk)).status_code == 404


def test_a_file_that_is_not_an_image_is_refused_and_nothing_is_stored(ops, s3):
    response = ops.post(admin_url("add"), partner_form(logo=logo_upload(b"<svg onload=alert(1)>", "acme.png")))
    assert response.status_code == 200
    assert "logo" in response.context["adminform"].form.errors
    assert not Partner.objects.filter(code="ACME").exists()
    assert bucket_keys(s3) == []


# --- local files (the default) ---------------------------------------------------------------------


def test_local_files_are_the_default_storage(tmp_path):
    # without a bucket, settings.py keeps uploads in local files
    assert settings_storage({"CEZBEK_VAR_DIR": str(tmp_path)}) == {
        "BACKEND": "django.core.files.storage.FileSystemStorage"
    }
    # AWS_STORAGE_BUCKET_NAME, django-storages' own name, is honoured too
    assert settings_storage({"CEZBEK_VAR_DIR": str(tmp_path), "AWS_STORAGE_BUCKET_NAME": "media"})["BACKEND"] == (
        "storages.backends.s3.S3Storage"
    )
    # and this test run, which names no bucket, uses local files
    assert isinstance(default_storage, FileSystemStorage)


def test_a_logo_is_stored_in_local_files_by_default(ops, media):
    logo = png()
    response = ops.post(admin_url("add"), partner_form(logo=logo_upload(logo)))
    assert response.status_code == 302
    acme = Partner.objects.get(code="ACME")
    path = Path(media) / acme.logo.name
    assert path.read_bytes() == logo
    assert served(ops.get(admin_url("logo", acme.pk))) == logo


def test_a_logo_over_the_size_limit_is_refused(ops, media):
    big = png(size=(16, 16)) + b"\0" * (LOGO_MAX_BYTES + 1)  # a valid PNG followed by padding
    response = ops.post(admin_url("add"), partner_form(logo=logo_upload(big)))
    assert response.status_code == 200
    assert "at most 1024 KB" in str(response.context["adminform"].form.errors["logo"])
    assert not Partner.objects.exists()
    assert not Path(media).exists() or not any(Path(media).rglob("*.png"))


# --- onboarding, start to end ------------------------------------------------------------------------


def test_onboarding_create_issue_webhook_rotate_revoke(ops, media):
    # the operator creates the partner and lands on its credentials page
    response = ops.post(admin_url("add"), partner_form(logo=logo_upload(png())), follow=True)
    acme = Partner.objects.get(code="ACME")
    assert response.redirect_chain[-1][0] == admin_url("credentials", acme.pk)
    assert "Next: issue the API key of ACME below" in response.content.decode()
    # issues its key: the secret is shown on that page only
    issued = ops.post(admin_url("credentials", acme.pk)).content.decode()
    first = PartnerCredential.objects.get(partner=acme)
    assert "kzs_" in issued and first.key_id in issued
    assert "kzs_" not in ops.get(admin_url("credentials", acme.pk)).content.decode()
    # sets the webhook URL (typed without a scheme: https is assumed)
    assert (
        ops.post(admin_url("change", acme.pk), change_form(acme, webhook_url="hooks.acme.id/cezbek")).status_code == 302
    )
    acme.refresh_from_db()
    assert acme.webhook_url == "https://hooks.acme.id/cezbek"
    # rotates: a second key, the first still live, then revokes the first
    ops.post(admin_url("credentials", acme.pk))
    assert PartnerCredential.objects.filter(partner=acme, revoked_at__isnull=True).count() == 2
    ops.post(admin_url("credential_revoke", acme.pk, first.pk))
    first.refresh_from_db()
    assert first.revoked_at is not None
    assert PartnerCredential.objects.filter(partner=acme, revoked_at__isnull=True).count() == 1
    # and the changelist shows the partner with its logo, one live key and its webhook
    row = ops.get(admin_url("changelist"), {"q": "acme.id"})
    assert row.context["cl"].result_count == 1
    html = row.content.decode()
    assert f'src="{admin_url("logo", acme.pk)}?v=' in html and "icon-yes.svg" in html


def test_finance_see_the_logo_as_an_image_but_cannot_replace_it(finance, ops, media):
    ops.post(admin_url("add"), partner_form(logo=logo_upload(png())))
    acme = Partner.objects.get(code="ACME")
    name = acme.logo.name
    page = finance.get(admin_url("change", acme.pk)).content.decode()
    assert f'<img src="{admin_url("logo", acme.pk)}?v=' in page and 'type="file"' not in page
    assert finance.get(admin_url("logo", acme.pk)).status_code == 200
    assert (
        finance.post(admin_url("change", acme.pk), change_form(acme, logo=logo_upload(png((0, 0, 0))))).status_code
        == 403
    )
    acme.refresh_from_db()
    assert acme.logo.name == name


def test_the_logo_is_not_served_to_staff_who_may_not_view_partners(client, django_user_model, ops, media):
    ops.post(admin_url("add"), partner_form(logo=logo_upload(png())))
    acme = Partner.objects.get(code="ACME")
    nobody = django_user_model.objects.create_user("temp", password="not-used", is_staff=True)
    client.force_login(nobody)
    assert client.get(admin_url("logo", acme.pk)).status_code == 403
    client.logout()
    assert client.get(admin_url("logo", acme.pk)).status_code == 302  # to the login page
