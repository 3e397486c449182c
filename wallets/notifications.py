"""What follows a payout's terminal state (DOMAIN.md §6): the partner's webhook and the customer's email.

`payout_notify` runs in a task queued by `wallets.services._after_terminal` (in the delivery path
itself only when the broker refuses that task): it records the webhook delivery (partners/webhooks.py)
and the email, each once (unique constraints), and queues their sending. A second run records and
sends nothing new. What could not be queued is found again: due webhooks by their periodic job,
PENDING emails by `emails_send_stranded`.

Customer email: after SUCCEEDED, when the purchase carried an email, from the admin-editable
`EmailTemplate`. Templates use `{placeholder}` (or `{{ placeholder }}`) and nothing else: values are
substituted, never evaluated, so a template cannot reach anything but the listed values. Sent
through Django's email API: Amazon SES (django-ses) in production, other backends elsewhere
(settings.EMAIL_BACKEND). Claimed PENDING → SENDING before the call, so it is sent at most once:
a worker that dies mid-call leaves it SENDING, for an operator to look at, rather than risk a
second copy.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from email.utils import make_msgid

from botocore.exceptions import BotoCoreError, ClientError
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.html import escape

from wallets.models import EmailNotification, EmailTemplate, Payout

logger = logging.getLogger("cezbek.notifications")

Status = EmailNotification.Status

# name → what it is (shown in the admin's help); the values come from the purchase and its payout.
PLACEHOLDERS = {
    "reference": "the purchase's Kezbek reference (kezbek_ref)",
    "partner_ref": "the partner's own reference of the purchase",
    "msisdn": "the customer's mobile number (62…)",
    "email": "the customer's email address",
    "wallet": "the e-wallet's name (LinkSaja, GoPaid, Josvo)",
    "wallet_code": "the e-wallet's code (LSAJA, GPAID, JOSVO)",
    "partner": "the partner's name",
    "partner_code": "the partner's code",
    "quantity": "the purchase's quantity",
    "amount": "the purchase (transaction) amount, e.g. 750,000.00",
    "cashback": "the cashback earned, e.g. 7,500.00",
    "reward": "the tier reward earned, e.g. 0.00",
    "total": "the amount paid into the wallet (cashback + reward)",
}

SAMPLE_VALUES = {
    "reference": "KZ7QXW2M4D9H1R",
    "partner_ref": "INV/001/002",
    "msisdn": "628118770510",
    "email": "customer@example.com",
    "wallet": "LinkSaja",
    "wallet_code": "LSAJA",
    "partner": "Lajada",
    "partner_code": "LAJADA",
    "quantity": "2",
    "amount": "750,000.00",
    "cashback": "7,500.00",
    "reward": "5,000.00",
    "total": "12,500.00",
}

# Used when no template row exists (the data migration 0004 creates the same one).
DEFAULT_TEMPLATE = {
    "subject": "Your cashback of IDR {total} from {partner} is in your {wallet}",
    "body_text": (
        "Hello,\n\n"
        "Thank you for your purchase at {partner} (reference {partner_ref}): {quantity} item(s) for IDR {amount}.\n\n"
        "IDR {total} has been paid into your {wallet} account {msisdn}: cashback IDR {cashback}, "
        "tier reward IDR {reward}.\n\n"
        "Kezbek reference: {reference}\n\n"
        "Kezbek, on behalf of {partner}\n"
    ),
    "body_html": "",
}

# `{name}` or `{{ name }}`; any other brace is an error (there are no literal braces).
_TOKEN = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}|\{\s*([^{}]*?)\s*\}|[{}]")


class TemplateProblem(ValueError):
    """A template that cannot be rendered: an unknown placeholder or a stray brace."""


def render(source: str, values: dict[str, str], *, html: bool = False) -> str:
    """Substitutes `{name}` / `{{ name }}` with values (HTML-escaped in HTML); raises TemplateProblem."""

    def substitute(match: re.Match) -> str:
        if match.group(1) is None and match.group(2) is None:
            line = source.count("\n", 0, match.start()) + 1
            raise TemplateProblem(
                f"a stray '{match.group(0)}' on line {line}: placeholders are written {{name}}, and there are no other braces"
            )
        name = match.group(1) if match.group(1) is not None else match.group(2)
        if name not in values:
            raise TemplateProblem(f"unknown placeholder {{{name}}}; use one of: {', '.join('{' + n + '}' for n in PLACEHOLDERS)}")
        return escape(values[name]) if html else values[name]

    return _TOKEN.sub(substitute, source)


def template_errors(*, subject: str, body_text: str, body_html: str) -> dict[str, list[str]]:
    """Field → problems, for the admin's form (empty when every part renders)."""
    errors: dict[str, list[str]] = {}
    for field, source, html in [("subject", subject, False), ("body_text", body_text, False), ("body_html", body_html, True)]:
        try:
            render(source or "", SAMPLE_VALUES, html=html)
        except TemplateProblem as exc:
            errors[field] = [str(exc)]
    if subject and ("\n" in subject or "\r" in subject):
        errors.setdefault("subject", []).append("The subject must be one line.")
    return errors


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def render_email(*, template: EmailTemplate | dict, values: dict[str, str]) -> RenderedEmail:
    """The email a template gives for these values (raises TemplateProblem)."""
    part = (lambda name: template[name]) if isinstance(template, dict) else (lambda name: getattr(template, name))
    subject = " ".join(render(part("subject"), values).split())  # one line, whatever the values hold
    html_source = part("body_html")
    return RenderedEmail(
        subject=subject,
        text=render(part("body_text"), values),
        html=render(html_source, values, html=True) if html_source else "",
    )


def current_template() -> EmailTemplate | dict:
    return EmailTemplate.objects.filter(purpose=EmailTemplate.Purpose.PAYOUT_SUCCEEDED).first() or DEFAULT_TEMPLATE


def _amount(value: Decimal) -> str:
    return f"{value:,.2f}"


def placeholder_values(*, payout: Payout) -> dict[str, str]:
    txn = payout.transaction
    return {
        "reference": txn.kezbek_ref,
        "partner_ref": txn.partner_ref,
        "msisdn": txn.msisdn,
        "email": txn.email,
        "wallet": txn.wallet.name,
        "wallet_code": txn.wallet.code,
        "partner": txn.partner.name,
        "partner_code": txn.partner.code,
        "quantity": str(txn.quantity),
        "amount": _amount(txn.amount),
        "cashback": _amount(txn.cashback),
        "reward": _amount(txn.reward),
        "total": _amount(payout.amount),
    }


# --- after a terminal state --------------------------------------------------------------------


def payout_notify(*, payout_id: int, enqueue: bool = True) -> dict[str, object]:
    """Records (once) and queues the partner webhook and the customer email for the payout's current state.

    The state is read now: a state the payout already left (an operator retried a FAILED one) is
    not announced; the state it reaches next is. With `enqueue=False` (the broker is down) they are
    only recorded: the webhook's periodic job and the email sweeper send them.
    """
    from partners.webhooks import webhook_enqueue, webhook_record

    payout = (
        Payout.objects.select_related("transaction__partner", "transaction__wallet", "transaction__tier", "provider")
        .filter(pk=payout_id)
        .first()
    )
    if payout is None or payout.status not in Payout.TERMINAL:
        return {}
    done: dict[str, object] = {}
    delivery = webhook_record(payout=payout)
    if delivery is not None:
        done["webhook"] = delivery.pk
        if enqueue and delivery.state == delivery.State.PENDING and delivery.attempts == 0:
            webhook_enqueue(delivery_id=delivery.pk)
    notification = email_record(payout=payout)
    if notification is not None:
        done["email"] = notification.pk
        if enqueue and notification.status == Status.PENDING:
            email_enqueue(notification_id=notification.pk)
    return done


def email_record(*, payout: Payout) -> EmailNotification | None:
    """The payout's customer email, recorded once: only after SUCCEEDED, only when the purchase had an email."""
    email = payout.transaction.email
    if payout.status != Payout.Status.SUCCEEDED or not email:
        return None
    notification, created = EmailNotification.objects.get_or_create(payout=payout, defaults={"to": email})
    if created:
        logger.info("email %s recorded for payout %s", notification.pk, payout.pk)
    return notification


def email_enqueue(*, notification_id: int, countdown: float | None = None, retry: int = 0) -> None:
    from kombu.exceptions import KombuError

    from wallets.tasks import payout_email_send

    try:
        payout_email_send.apply_async((notification_id,), {"retry": retry}, countdown=countdown)
    except KombuError:
        logger.exception("could not queue email %s; it stays PENDING (wallets.emails_send_stranded or the admin's 'send again' queues it)", notification_id)


# Older PENDING emails are left to an operator (the admin's "send again").
STRANDED_EMAIL_MAX_AGE = timedelta(days=3)


def emails_send_stranded(*, limit: int = 500) -> int:
    """Queues the PENDING emails nobody is coming back to: those whose queueing failed (a broker
    outage) or whose retry message was lost. Returns how many it queued.

    An email waiting for a retry was touched at most an hour ago (`email_retry_delay`), and a retry
    message held by a worker that died comes back after the broker's visibility timeout (2 h): only
    emails untouched for CEZBEK_EMAIL_STRANDED_SECONDS (4 h) are taken, and none older than
    STRANDED_EMAIL_MAX_AGE (a customer told days late is told by an operator's "send again", not by
    this). Each is claimed by touching it before its message is queued, so the next run leaves it
    alone while that message waits; sending claims PENDING → SENDING, so nothing is sent twice.
    """
    from django.conf import settings

    now = timezone.now()
    stranded = EmailNotification.objects.filter(
        status=Status.PENDING,
        updated_at__lt=now - timedelta(seconds=settings.CEZBEK_EMAIL_STRANDED_SECONDS),
        created_at__gt=now - STRANDED_EMAIL_MAX_AGE,
    )
    with transaction.atomic():
        claimed = list(stranded.select_for_update(skip_locked=True).order_by("updated_at", "id").values_list("id", "attempts")[:limit])
        EmailNotification.objects.filter(pk__in=[pk for pk, _ in claimed]).update(updated_at=now)
    for notification_id, attempts in claimed:
        email_enqueue(notification_id=notification_id, retry=attempts)
    if claimed:
        logger.warning("queued %d stranded PENDING emails", len(claimed))
    return len(claimed)


# Errors SES answers for a moment (throttling, its own trouble): worth another try.
RETRYABLE_SES_CODES = {"Throttling", "ThrottlingException", "TooManyRequestsException", "ServiceUnavailable", "InternalFailure", "RequestTimeout"}


def email_send(*, notification_id: int, last_try: bool = True) -> str | None:
    """Sends the email if it is PENDING (claimed first); returns its new status, or None when not ours to send.

    A refusal (bad address, unverified sender, a template that no longer renders) is FAILED at once;
    a passing problem (throttling, a connection) leaves it PENDING for another try unless `last_try`.
    """
    if not EmailNotification.objects.filter(pk=notification_id, status=Status.PENDING).update(
        status=Status.SENDING, attempts=F("attempts") + 1, updated_at=timezone.now()
    ):
        return None
    notification = EmailNotification.objects.select_related(
        "payout__transaction__partner", "payout__transaction__wallet"
    ).get(pk=notification_id)
    try:
        rendered = render_email(template=current_template(), values=placeholder_values(payout=notification.payout))
    except TemplateProblem as exc:
        return _finish(notification, Status.FAILED, error=f"template: {exc}")
    message_id = make_msgid(domain="cezbek")
    message = EmailMultiAlternatives(
        subject=rendered.subject,
        body=rendered.text,
        to=[notification.to],
        headers={"Message-ID": message_id},
    )
    if rendered.html:
        message.attach_alternative(rendered.html, "text/html")
    try:
        message.send()
    except (ClientError, BotoCoreError, OSError, ValueError) as exc:  # SES, SMTP (an OSError), a bad header
        retryable = _retryable(exc)
        error = f"{type(exc).__name__}: {exc}"[:500]
        logger.warning("email %s for payout %s not sent: %s", notification.pk, notification.payout_id, error)
        status = Status.PENDING if retryable and not last_try else Status.FAILED
        return _finish(notification, status, error=error, subject=rendered.subject)
    provider_id = message.extra_headers.get("message_id") or message_id  # django-ses puts SES's MessageId here
    logger.info("email %s for payout %s sent (%s)", notification.pk, notification.payout_id, provider_id)
    return _finish(notification, Status.SENT, subject=rendered.subject, provider_message_id=str(provider_id)[:200])


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code") in RETRYABLE_SES_CODES
    return isinstance(exc, (OSError, BotoCoreError))  # a connection, a timeout: SMTP's errors are OSErrors


def _finish(notification: EmailNotification, status: str, *, error: str = "", subject: str = "", provider_message_id: str = "") -> str:
    fields = {"status": status, "error": error, "updated_at": timezone.now()}
    if subject:
        fields["subject"] = subject[:300]
    if status == Status.SENT:
        fields.update(sent_at=timezone.now(), provider_message_id=provider_message_id)
    EmailNotification.objects.filter(pk=notification.pk, status=Status.SENDING).update(**fields)
    return status


def email_send_again(*, notification: EmailNotification) -> bool:
    """An operator's "send again" for an email not sent (FAILED, PENDING, or SENDING for a long time); False otherwise."""
    stale = timezone.now() - timedelta(minutes=STALE_SENDING_MINUTES)
    sendable = EmailNotification.objects.filter(
        Q(status__in=[Status.FAILED, Status.PENDING]) | Q(status=Status.SENDING, updated_at__lt=stale), pk=notification.pk
    )
    if not sendable.update(status=Status.PENDING, error="", updated_at=timezone.now()):
        return False
    transaction.on_commit(lambda: email_enqueue(notification_id=notification.pk))
    return True


# A SENDING email older than this lost its worker mid-call: it may or may not have left.
STALE_SENDING_MINUTES = 15


def email_retry_delay(*, retry: int) -> float:
    """Seconds before another try of an email that met a passing problem."""
    return min(30 * 2**retry, 3600)
