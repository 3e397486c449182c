"""Webhooks to partners (API.md "Webhooks to partners", DOMAIN.md §6): record, sign, send, retry.

- One `WebhookDelivery` per (payout, event), recorded by a task after the payout reached SUCCEEDED,
  FAILED or CANCELLED (MANUAL_REVIEW announces nothing until an operator resolves it). Its body is
  fixed then: `{"event", "kezbek_ref", "partner_ref", "payout": {…}, "sent_at"}`, the payout object
  shaped as in the cashback document; `sent_at` is stamped per attempt.
- Signed exactly like a partner's request (partners/signing.py): key id, timestamp and HMAC over
  POST, the path as sent, the timestamp and the body's SHA-256, with the partner's newest live key,
  so a partner verifies it with the code that signs its own requests.
- Every attempt is claimed first with a conditional update that pushes `next_attempt_at` past the
  attempt's timeouts: two workers (or two runs of the periodic task) never send one delivery at once,
  and a delivery whose worker died is simply due again once its claim runs out.
- Outcomes: 2xx delivered; 4xx other than 408 and 429 stopped for good (the partner refused it);
  anything else (5xx, 408, 429, 3xx, a timeout, a refused connection) retried with exponential
  back-off and jitter until 24 h after the first attempt, then given up. Every attempt is logged
  with its status code, latency and error.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

import requests
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from partners import signing
from partners.models import Partner, PartnerCredential, WebhookAttempt, WebhookDelivery
from partners.services import credential_secret

logger = logging.getLogger("cezbek.webhooks")

Event = WebhookDelivery.Event
State = WebhookDelivery.State
Outcome = WebhookAttempt.Outcome

# The payout state each event announces. MANUAL_REVIEW is terminal too, but not an outcome a
# partner can act on: it is announced once an operator resolves it (succeeded or failed).
EVENT_FOR_STATUS = {"SUCCEEDED": Event.SUCCEEDED, "FAILED": Event.FAILED, "CANCELLED": Event.CANCELLED}

DELIVERY_HEADER = "X-Cezbek-Delivery"
EVENT_HEADER = "X-Cezbek-Event"
USER_AGENT = "Cezbek-Webhooks/1"


# --- recording ---------------------------------------------------------------------------------


def webhook_record(*, payout) -> WebhookDelivery | None:
    """The delivery announcing the payout's current terminal state, recorded once; None when there is nothing to send.

    Nothing is sent for MANUAL_REVIEW, non-terminal states, or a partner without a webhook URL.
    Recording a new event supersedes the payout's earlier deliveries still waiting for a retry, so a
    stale `payout.failed` never lands after the `payout.succeeded` of an operator's retry.
    """
    event = EVENT_FOR_STATUS.get(payout.status)
    txn = payout.transaction
    partner = txn.partner
    if event is None or not partner.webhook_url:
        return None
    existing = WebhookDelivery.objects.filter(payout=payout, event=event).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            delivery = WebhookDelivery.objects.create(
                partner=partner,
                payout=payout,
                event=event,
                kezbek_ref=txn.kezbek_ref,
                payload=json.dumps(_payload(event=event, txn=txn)),
                next_attempt_at=timezone.now(),
            )
            superseded = (
                WebhookDelivery.objects.filter(payout=payout, state=State.PENDING)
                .exclude(pk=delivery.pk)
                .update(state=State.SUPERSEDED, next_attempt_at=None, last_error=f"superseded by {event}")
            )
    except IntegrityError:  # recorded meanwhile by another run of the task
        return WebhookDelivery.objects.get(payout=payout, event=event)
    logger.info(
        "webhook %s recorded for payout %s (%s)%s",
        delivery.pk, payout.pk, event, f"; {superseded} earlier superseded" if superseded else "",
    )
    return delivery


def _payload(*, event: str, txn) -> dict:
    from cashback.apis import transaction_document  # the partner API's own rendering of the payout

    document = transaction_document(txn)
    return {
        "event": event,
        "kezbek_ref": document["kezbek_ref"],
        "partner_ref": document["partner_ref"],
        "payout": document["payout"],
    }


def webhook_body(*, delivery: WebhookDelivery, sent_at: datetime) -> bytes:
    """The exact bytes POSTed: the recorded payload with this attempt's `sent_at`."""
    document = json.loads(delivery.payload)
    document["sent_at"] = timezone.localtime(sent_at).isoformat()
    return json.dumps(document, separators=(",", ":")).encode()


def signing_credential(*, partner: Partner) -> PartnerCredential | None:
    """The key that signs a partner's webhooks: its newest live one (the partner holds its secret)."""
    return partner.credentials.filter(revoked_at__isnull=True).order_by("-created_at", "-id").first()


# --- classifying -----------------------------------------------------------------------------------


def classify(status_code: int) -> str:
    """2xx delivered; 4xx except 408 and 429 stopped for good; everything else retried."""
    if 200 <= status_code < 300:
        return Outcome.DELIVERED
    if 400 <= status_code < 500 and status_code not in (408, 429):
        return Outcome.STOPPED
    return Outcome.RETRY


def retry_delay(*, attempt: int, retry_after: float | None = None) -> float:
    """Seconds before attempt `attempt + 1`: exponential (base × 2^(n-1), capped) with equal jitter.

    A partner's Retry-After (429, 503) is honoured up to the cap.
    """
    cap = settings.CEZBEK_WEBHOOK_RETRY_MAX_SECONDS
    ceiling = min(cap, settings.CEZBEK_WEBHOOK_RETRY_BASE_SECONDS * 2 ** max(attempt - 1, 0))
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)
    if retry_after:
        delay = max(delay, min(retry_after, cap))
    return delay


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        return max((parsedate_to_datetime(value) - timezone.now()).total_seconds(), 0.0)
    except (TypeError, ValueError):
        return None


# --- sending ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttemptResult:
    outcome: str
    status_code: int | None = None
    latency_ms: int | None = None
    error: str = ""
    retry_after: float | None = None
    url: str = ""


def webhook_attempt(*, delivery_id: int) -> str | None:
    """One attempt of a delivery that is due; None when it is not (delivered, stopped, or claimed elsewhere)."""
    if not _claim(delivery_id=delivery_id):
        return None
    return _attempt_claimed(delivery_id=delivery_id)


def webhooks_send_due(*, limit: int | None = None) -> dict[str, int]:
    """Sends the deliveries whose next attempt is due (the periodic task), oldest due first.

    Each is claimed in its own short transaction, under `SELECT … FOR UPDATE SKIP LOCKED` on
    PostgreSQL plus the conditional claim, so concurrent runs share the work and never send one
    delivery twice. Stops after `limit` deliveries or CEZBEK_WEBHOOK_DUE_BUDGET_SECONDS.
    """
    limit = settings.CEZBEK_WEBHOOK_DUE_BATCH if limit is None else limit
    deadline = time.monotonic() + settings.CEZBEK_WEBHOOK_DUE_BUDGET_SECONDS
    counts: dict[str, int] = {}
    for _ in range(limit):
        if time.monotonic() > deadline:
            break
        with transaction.atomic():
            delivery_id = (
                WebhookDelivery.objects.select_for_update(skip_locked=True)
                .filter(state=State.PENDING, next_attempt_at__lte=timezone.now())
                .order_by("next_attempt_at", "id")
                .values_list("id", flat=True)
                .first()
            )
            if delivery_id is None:
                break
            claimed = _claim(delivery_id=delivery_id)
        if claimed:
            outcome = _attempt_claimed(delivery_id=delivery_id) or "lost"
            counts[outcome] = counts.get(outcome, 0) + 1
    if counts:
        logger.info("webhooks due: %s", counts)
    return counts


def webhook_resend(*, delivery: WebhookDelivery) -> None:
    """An operator's re-send: the delivery is due now, with a fresh 24 h window; a worker sends it."""
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        state=State.PENDING, first_attempt_at=None, next_attempt_at=timezone.now(), delivered_at=None
    )
    logger.info("webhook %s (%s, payout %s) re-sent by an operator", delivery.pk, delivery.event, delivery.payout_id)
    transaction.on_commit(lambda: webhook_enqueue(delivery_id=delivery.pk))


def webhook_enqueue(*, delivery_id: int) -> None:
    """Queues the delivery's attempt; a broker outage loses nothing (the periodic task finds it due)."""
    from kombu.exceptions import KombuError

    from partners.tasks import webhook_deliver

    try:
        webhook_deliver.apply_async((delivery_id,))
    except KombuError:
        logger.exception("could not queue webhook %s; partners.webhooks_retry_due will send it", delivery_id)


def _claim_seconds() -> float:
    return settings.CEZBEK_WEBHOOK_CONNECT_TIMEOUT + settings.CEZBEK_WEBHOOK_READ_TIMEOUT + 30


def _claim(*, delivery_id: int) -> bool:
    """Takes a due delivery for one attempt: counts it and moves its next attempt past the claim's end."""
    now = timezone.now()
    return (
        WebhookDelivery.objects.filter(pk=delivery_id, state=State.PENDING, next_attempt_at__lte=now).update(
            attempts=F("attempts") + 1,
            first_attempt_at=Coalesce(F("first_attempt_at"), now),
            next_attempt_at=now + timedelta(seconds=_claim_seconds()),
        )
        == 1
    )


def _attempt_claimed(*, delivery_id: int) -> str | None:
    delivery = WebhookDelivery.objects.select_related("partner").get(pk=delivery_id)
    number = delivery.attempts
    try:
        result = _post(delivery)
    except Exception as exc:  # noqa: BLE001 — recorded as a failed attempt, so the 24 h window still ends
        logger.exception("webhook %s attempt %s broke before an answer", delivery.pk, number)
        result = AttemptResult(Outcome.RETRY, error=f"{type(exc).__name__}: {exc}"[:300], url=delivery.partner.webhook_url or "")
    return _record_outcome(delivery, number=number, result=result)


def _post(delivery: WebhookDelivery) -> AttemptResult:
    partner = delivery.partner
    url = partner.webhook_url or ""
    if not url:
        return AttemptResult(Outcome.STOPPED, error="the partner has no webhook URL (any more)")
    credential = signing_credential(partner=partner)
    if credential is None:
        return AttemptResult(Outcome.RETRY, error="the partner has no live API key to sign with", url=url)
    try:
        secret = credential_secret(credential=credential)
    except ValueError:  # encrypted under a key no longer configured (CEZBEK_ENCRYPTION_KEY)
        return AttemptResult(Outcome.RETRY, error=f"the secret of key {credential.key_prefix}… cannot be decrypted", url=url)
    now = timezone.now()
    body = webhook_body(delivery=delivery, sent_at=now)
    try:
        prepared = requests.Request(
            "POST",
            url,
            data=body,
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
        ).prepare()
    except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema) as exc:
        return AttemptResult(Outcome.STOPPED, error=f"invalid webhook URL: {exc}"[:300], url=url)
    # Signed over the path exactly as it goes on the request line (requests may re-quote it).
    prepared.headers.update(
        signing.signed_headers(
            key_id=credential.key_id,
            secret=secret,
            method="POST",
            path=prepared.path_url,
            body=body,
            timestamp=int(now.timestamp()),
        )
    )
    prepared.headers[DELIVERY_HEADER] = str(delivery.pk)
    prepared.headers[EVENT_HEADER] = delivery.event
    started = time.monotonic()
    try:
        with requests.Session() as session:
            session.trust_env = settings.CEZBEK_WEBHOOK_TRUST_ENV
            # send() skips the environment (proxies, CA bundle) that request() would merge in.
            environment = session.merge_environment_settings(prepared.url, {}, None, None, None)
            response = session.send(
                prepared,
                timeout=(settings.CEZBEK_WEBHOOK_CONNECT_TIMEOUT, settings.CEZBEK_WEBHOOK_READ_TIMEOUT),
                allow_redirects=False,
                proxies=environment["proxies"],
                verify=environment["verify"],
                cert=environment["cert"],
            )
            response.close()
    except requests.Timeout as exc:
        kind = "connect timeout" if isinstance(exc, requests.ConnectTimeout) else "read timeout"
        return AttemptResult(Outcome.RETRY, latency_ms=_ms(started), error=kind, url=url)
    except requests.RequestException as exc:
        return AttemptResult(Outcome.RETRY, latency_ms=_ms(started), error=f"{type(exc).__name__}: {exc}"[:300], url=url)
    outcome = classify(response.status_code)
    error = ""
    if outcome != Outcome.DELIVERED:
        location = response.headers.get("Location")
        error = f"HTTP {response.status_code}" + (f", redirected to {location}" if location else "")
    return AttemptResult(
        outcome,
        status_code=response.status_code,
        latency_ms=_ms(started),
        error=error[:300],
        retry_after=_retry_after(response) if response.status_code in (429, 503) else None,
        url=url,
    )


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _record_outcome(delivery: WebhookDelivery, *, number: int, result: AttemptResult) -> str | None:
    """Logs the attempt and moves the delivery, if it is still ours (same attempt number, still PENDING)."""
    now = timezone.now()
    outcome = result.outcome
    fields: dict = {"last_status_code": result.status_code, "last_error": result.error}
    if outcome == Outcome.DELIVERED:
        fields.update(state=State.DELIVERED, delivered_at=now, next_attempt_at=None)
    elif outcome == Outcome.STOPPED:
        fields.update(state=State.STOPPED, next_attempt_at=None)
    else:
        window_end = (delivery.first_attempt_at or now) + timedelta(seconds=settings.CEZBEK_WEBHOOK_RETRY_WINDOW_SECONDS)
        if now >= window_end:
            outcome = Outcome.GAVE_UP
            fields.update(state=State.GAVE_UP, next_attempt_at=None)
        else:
            delay = retry_delay(attempt=number, retry_after=result.retry_after)
            fields["next_attempt_at"] = min(now + timedelta(seconds=delay), window_end)
    with transaction.atomic():
        WebhookAttempt.objects.create(
            delivery=delivery,
            number=number,
            url=result.url[:500],
            status_code=result.status_code,
            latency_ms=result.latency_ms,
            outcome=outcome,
            error=result.error,
        )
        moved = WebhookDelivery.objects.filter(pk=delivery.pk, attempts=number, state=State.PENDING).update(**fields)
    log = logger.info if outcome == Outcome.DELIVERED else logger.warning
    log(
        "webhook %s (%s, payout %s) attempt %s: %s %s",
        delivery.pk, delivery.event, delivery.payout_id, number, outcome, result.status_code or result.error,
    )
    return outcome if moved else None
