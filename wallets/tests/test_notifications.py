"""Customer emails after SUCCEEDED (DOMAIN.md §6), for real: through django-ses to moto's SES server.

Payouts are delivered through the real services against the provider sandbox (Celery eager in the
test process); the email goes out through the SES backend configured at the moto server, and is
read back from moto's own record of what SES accepted.
"""

from __future__ import annotations

import email
from datetime import timedelta
from email import policy

import pytest
from django.urls import reverse
from django.utils import timezone

from wallets.models import EmailNotification, EmailTemplate, Payout
from wallets.notifications import DEFAULT_TEMPLATE, SAMPLE_VALUES, TemplateProblem, render
from wallets.tasks import payout_email_send, payout_notify
from wallets.tests.conftest import breakers_closed, routes, sandbox, sandbox_process  # noqa: F401

PATH = "/api/v1/cashbacks"
SENDER = "no-reply@cezbek.local"
ALL_LSAJA_ROUTES_REFUSE = {code: {"refuse_rate": 1} for code in ("LSAJAH2H", "MTRANS", "XENIT")}

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def template(db):
    """The template the data migration creates (a transactional test's flush removes it: made again here)."""
    return EmailTemplate.objects.get_or_create(
        purpose="payout_succeeded", defaults={k: DEFAULT_TEMPLATE[k] for k in ("subject", "body_text", "body_html")}
    )[0]


@pytest.fixture
def eager(monkeypatch):
    from cezbek.celery import app

    # The namespaced name: Celery 5.6 reads task_always_eager from the CELERY_-prefixed key it was configured with.
    monkeypatch.setattr(app.conf, "CELERY_TASK_ALWAYS_EAGER", True)


@pytest.fixture
def ses(aws, settings):
    """The SES backend (django-ses), at the moto server through boto3's AWS_ENDPOINT_URL; the sender verified."""
    settings.EMAIL_BACKEND = "django_ses.SESBackend"
    settings.AWS_SES_REGION_NAME = None
    settings.AWS_SES_REGION_ENDPOINT_URL = None  # boto3 resolves it: AWS_ENDPOINT_URL, set by the fixture
    settings.DEFAULT_FROM_EMAIL = f"Kezbek <{SENDER}>"
    aws.client("ses").verify_email_identity(EmailAddress=SENDER)
    return aws


def sent_messages(aws) -> list[tuple[dict, email.message.EmailMessage]]:
    """What SES accepted, as moto recorded it: (moto's row, the parsed message)."""
    return [(row, email.message_from_string(row["raw_data"], policy=policy.default)) for row in aws.data("ses").get("RawMessage", [])]


@pytest.fixture
def buy(api, ladder, global_rule, routes, breakers_closed, eager, sandbox):
    counter = iter(range(1, 10**6))

    def post(*, email: str | None = "budi@example.co.id", amount: str = "750000.00") -> Payout:
        n = next(counter)
        purchase = {"partner_ref": f"INV/{n}", "msisdn": f"0812{n:08d}", "quantity": 2, "amount": amount, "wallet": "LSAJA"}
        if email:
            purchase["email"] = email
        response = api.post(PATH, purchase)
        assert response.status_code == 201, response.content
        return Payout.objects.select_related("transaction__partner").get(transaction__kezbek_ref=response.json()["kezbek_ref"])

    return post


# --- sent through SES ------------------------------------------------------------------------------


def test_a_succeeded_payout_emails_the_customer_once_through_ses(ses, buy):
    payout = buy()
    payout.refresh_from_db()
    assert payout.status == "SUCCEEDED"
    txn = payout.transaction
    [(row, message)] = sent_messages(ses)
    assert row["source"] == f"Kezbek <{SENDER}>"
    assert message["To"] == "budi@example.co.id"
    # the default template, placeholders rendered: 1 % of 750,000.00 = 7,500.00
    assert message["Subject"] == "Your cashback of IDR 7,500.00 from Lajada is in your LinkSaja"
    text = message.get_body(("plain",)).get_content()
    assert f"Kezbek reference: {txn.kezbek_ref}" in text
    assert f"reference {txn.partner_ref}): 2 item(s) for IDR 750,000.00" in text
    assert f"paid into your LinkSaja account {txn.msisdn}: cashback IDR 7,500.00, tier reward IDR 0.00" in text
    assert "{" not in text and "}" not in text
    notification = EmailNotification.objects.get()
    assert (notification.payout_id, notification.to, notification.status, notification.attempts, notification.error) == (
        payout.pk, "budi@example.co.id", "SENT", 1, "",
    )
    assert notification.provider_message_id == row["id"]  # SES's MessageId
    assert notification.subject == message["Subject"] and notification.sent_at is not None


def test_running_the_tasks_again_sends_nothing_more(ses, buy):
    payout = buy()
    notification = EmailNotification.objects.get()
    payout_notify.delay(payout.pk)
    payout_email_send.delay(notification.pk)
    payout_notify.delay(payout.pk)
    assert len(sent_messages(ses)) == 1
    assert EmailNotification.objects.count() == 1
    notification.refresh_from_db()
    assert (notification.status, notification.attempts) == ("SENT", 1)


def test_a_broker_outage_loses_neither_the_email_nor_the_webhook(ses, buy, api, monkeypatch, settings):
    from kombu.exceptions import OperationalError

    from partners.models import Partner, WebhookDelivery
    from partners.tasks import webhook_deliver
    from wallets.notifications import emails_send_stranded

    def broker_down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to the broker. Connection refused.")

    Partner.objects.update(webhook_url="https://partner.example/hooks")
    with monkeypatch.context() as outage:
        outage.setattr(payout_notify, "apply_async", broker_down)
        outage.setattr(payout_email_send, "apply_async", broker_down)
        outage.setattr(webhook_deliver, "apply_async", broker_down)
        payout = buy()
    payout.refresh_from_db()
    assert payout.status == "SUCCEEDED"
    # recorded by the process that moved the payout; the webhook's periodic job finds it due
    delivery = WebhookDelivery.objects.get(payout=payout)
    assert (delivery.event, delivery.state, delivery.attempts) == ("payout.succeeded", "PENDING", 0)
    notification = EmailNotification.objects.get(payout=payout)
    assert (notification.status, notification.attempts) == ("PENDING", 0)
    assert sent_messages(ses) == []

    # the broker is back; a PENDING email is left alone while it may still be waiting for a retry
    assert emails_send_stranded() == 0
    EmailNotification.objects.filter(pk=notification.pk).update(
        updated_at=timezone.now() - timedelta(seconds=settings.CEZBEK_EMAIL_STRANDED_SECONDS + 1)
    )
    assert emails_send_stranded() == 1
    [(row, message)] = sent_messages(ses)
    assert message["To"] == "budi@example.co.id"
    notification.refresh_from_db()
    assert (notification.status, notification.attempts, notification.provider_message_id) == ("SENT", 1, row["id"])
    assert emails_send_stranded() == 0 and len(sent_messages(ses)) == 1


def test_no_email_when_the_purchase_had_none(ses, buy):
    payout = buy(email=None)
    payout.refresh_from_db()
    assert payout.status == "SUCCEEDED"
    assert sent_messages(ses) == [] and not EmailNotification.objects.exists()


def test_no_email_for_a_failed_payout(ses, buy, sandbox):
    sandbox.faults(ALL_LSAJA_ROUTES_REFUSE)
    payout = buy()
    payout.refresh_from_db()
    assert payout.status == "FAILED"
    assert sent_messages(ses) == [] and not EmailNotification.objects.exists()


def test_the_template_edited_in_the_admin_is_what_customers_get(ses, buy, admin_client, template):
    response = admin_client.post(
        reverse("admin:wallets_emailtemplate_change", args=[template.pk]),
        {
            "purpose": "payout_succeeded",
            "subject": "{{ partner_code }} paid you IDR {total}",
            "body_text": "Hi {email}, {cashback} for {reference}.",
            "body_html": "<p>Hi <b>{email}</b>, from {partner}</p>",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    from partners.models import Partner

    Partner.objects.filter(code="LAJADA").update(name="Lajada <Toko & Co>")
    payout = buy(email="siti@example.id")
    [(_, message)] = sent_messages(ses)
    assert message["Subject"] == "LAJADA paid you IDR 7,500.00"
    assert message.get_body(("plain",)).get_content().strip() == f"Hi siti@example.id, 7,500.00 for {payout.transaction.kezbek_ref}."
    # HTML beside it, values escaped
    assert message.get_body(("html",)).get_content().strip() == "<p>Hi <b>siti@example.id</b>, from Lajada &lt;Toko &amp; Co&gt;</p>"


def test_an_ses_refusal_is_recorded_and_sent_again_from_the_admin(aws, settings, buy, admin_client):
    settings.EMAIL_BACKEND = "django_ses.SESBackend"
    settings.AWS_SES_REGION_NAME = settings.AWS_SES_REGION_ENDPOINT_URL = None
    settings.DEFAULT_FROM_EMAIL = f"Kezbek <{SENDER}>"  # not verified at SES yet
    buy()
    notification = EmailNotification.objects.get()
    assert notification.status == "FAILED" and notification.attempts == 1
    assert "MessageRejected" in notification.error and SENDER in notification.error
    assert sent_messages(aws) == []
    # the sender is verified; an operator sends it again
    aws.client("ses").verify_email_identity(EmailAddress=SENDER)
    changelist = reverse("admin:wallets_emailnotification_changelist")
    assert "MessageRejected" in admin_client.get(changelist + "?status__exact=FAILED").content.decode()
    response = admin_client.post(changelist, {"action": "send_again", "_selected_action": [notification.pk]}, follow=True)
    assert "1 email(s) queued to be sent again" in response.content.decode()
    notification.refresh_from_db()
    assert (notification.status, notification.attempts, notification.error) == ("SENT", 2, "")
    assert len(sent_messages(aws)) == 1
    # a sent email is never sent again
    response = admin_client.post(changelist, {"action": "send_again", "_selected_action": [notification.pk]}, follow=True)
    assert "0 email(s) queued" in response.content.decode()
    assert len(sent_messages(aws)) == 1


def test_without_a_template_row_the_default_is_used(buy, mailoutbox):
    EmailTemplate.objects.all().delete()
    payout = buy()
    [message] = mailoutbox  # Django's locmem backend: tests' default
    assert message.subject == "Your cashback of IDR 7,500.00 from Lajada is in your LinkSaja"
    assert payout.transaction.kezbek_ref in message.body


# --- the template in the admin ----------------------------------------------------------------------


@pytest.mark.django_db
def test_the_preview_renders_sample_data_and_saves_nothing(admin_client, template):
    # the saved template
    page = admin_client.get(reverse("admin:wallets_emailtemplate_preview", args=[template.pk])).content.decode()
    assert "Your cashback of IDR 12,500.00 from Lajada is in your LinkSaja" in page
    assert f"Kezbek reference: {SAMPLE_VALUES['reference']}" in page
    # the change form links it and offers the button
    form = admin_client.get(reverse("admin:wallets_emailtemplate_change", args=[template.pk])).content.decode()
    assert 'name="_preview"' in form and reverse("admin:wallets_emailtemplate_preview", args=[template.pk]) in form
    # what was typed, unsaved
    response = admin_client.post(
        reverse("admin:wallets_emailtemplate_change", args=[template.pk]),
        {"purpose": "payout_succeeded", "subject": "Hello {msisdn}", "body_text": "You got {total} at {partner}", "body_html": "<i>{wallet}</i>", "_preview": "1"},
    )
    page = response.content.decode()
    assert response.status_code == 200 and "Nothing was saved" in page
    assert "Hello 628118770510" in page and "You got 12,500.00 at Lajada" in page
    assert 'srcdoc="&lt;i&gt;LinkSaja&lt;/i&gt;"' in page  # the HTML body in a sandboxed frame
    template.refresh_from_db()
    assert template.subject == DEFAULT_TEMPLATE["subject"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "field, value, error",
    [
        ("subject", "Cashback for {voucher}", "unknown placeholder {voucher}"),
        ("body_text", "Hi {reference", "a stray &#x27;{&#x27; on line 1"),
        ("body_text", "Hi\n{% if email %}x{% endif %}", "unknown placeholder {% if email %}"),
        ("body_html", "<p>{{ msisdn }}</p> }", "a stray &#x27;}&#x27; on line 1"),
        ("subject", "{{ amount.__class__ }}", "unknown placeholder {amount.__class__}"),
    ],
)
def test_a_template_that_cannot_render_is_refused_on_save(admin_client, template, field, value, error):
    data = {"purpose": "payout_succeeded", "subject": template.subject, "body_text": template.body_text, "body_html": ""}
    data[field] = value
    for preview in (False, True):  # saving, and previewing, are both refused with the reason
        response = admin_client.post(
            reverse("admin:wallets_emailtemplate_change", args=[template.pk]), {**data, **({"_preview": "1"} if preview else {})}
        )
        page = response.content.decode()
        assert response.status_code == 200 and "Please correct the error below." in page
        assert error in page, page[page.find("errorlist") - 200 : page.find("errorlist") + 600]
    template.refresh_from_db()
    assert (template.subject, template.body_text, template.body_html) == (
        DEFAULT_TEMPLATE["subject"], DEFAULT_TEMPLATE["body_text"], "",
    )


@pytest.mark.django_db
def test_the_data_migration_creates_a_template_that_renders():
    from importlib import import_module

    from django.apps import apps

    EmailTemplate.objects.all().delete()
    import_module("wallets.migrations.0003_customer_emails").create_default_template(apps, None)
    made = EmailTemplate.objects.get(purpose="payout_succeeded")
    assert (made.subject, made.body_text) == (DEFAULT_TEMPLATE["subject"], DEFAULT_TEMPLATE["body_text"])
    made.full_clean()  # valid as the admin checks it


@pytest.mark.django_db
def test_render_substitutes_only_known_values():
    values = {"reference": "KZ1", "partner": "A & B"}
    assert render("{reference} / {{ reference }} / { partner }", values) == "KZ1 / KZ1 / A & B"
    assert render("<b>{partner}</b>", values, html=True) == "<b>A &amp; B</b>"
    with pytest.raises(TemplateProblem, match=r"unknown placeholder \{total\}"):
        render("{total}", values)
    with pytest.raises(TemplateProblem, match="stray '}' on line 2"):
        render("ok\n}", values)


def test_notification_pages_answer(ses, buy, admin_client):
    payout = buy()
    notification = EmailNotification.objects.get()
    for url in [
        reverse("admin:wallets_emailnotification_changelist"),
        reverse("admin:wallets_emailnotification_changelist") + f"?q={payout.pk}",
        reverse("admin:wallets_emailnotification_change", args=[notification.pk]),
        reverse("admin:wallets_emailtemplate_changelist"),
    ]:
        response = admin_client.get(url)
        assert response.status_code == 200, url
    assert "budi@example.co.id" in admin_client.get(reverse("admin:wallets_emailnotification_changelist") + f"?q={payout.pk}").content.decode()
