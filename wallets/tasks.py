"""Thin Celery tasks: take ids, call one service, safe to run twice (claims decide who acts)."""

from celery import shared_task
from celery_batches import Batches
from django.conf import settings

from wallets import services


@shared_task(name="wallets.payout_deliver")
def payout_deliver(payout_id: int, hint: dict | None = None) -> str | None:
    return services.payout_deliver(payout_id=payout_id, hint=hint)


@shared_task(
    name="wallets.payouts_deliver",
    base=Batches,
    flush_every=settings.CEZBEK_PAYOUT_BATCH_SIZE,
    flush_interval=settings.CEZBEK_PAYOUT_BATCH_WAIT_SECONDS,
)
def payouts_deliver(requests) -> dict:
    """New payouts, gathered by the worker into batches (celery-batches): one call per batch. A
    request is one `payout_enqueue(hint=…)` (the payout id, its hint, the request id in a header)
    or several a web process gathered (`payouts`: [payout id, hint, request id] each).
    Acknowledged after the batch returns (acks_late).

    Each payout's log lines carry its own message's task id and the request id it was queued under.
    """
    from cezbek import logs
    from cezbek.tracing import HEADER

    items, contexts = [], {}
    for request in requests:
        task = (request.id, "wallets.payouts_deliver")
        gathered = request.kwargs.get("payouts")
        if gathered is None:
            gathered = [(request.args[0], request.kwargs.get("hint"), (request.request_dict or {}).get(HEADER))]
        for payout_id, hint, rid in gathered:
            items.append((payout_id, hint))
            contexts[payout_id] = {"rid": rid, "task": task}
    return services.payouts_deliver(items=items, scope=lambda payout_id: logs.task_context(**contexts[payout_id]))


@shared_task(name="wallets.payout_resolve")
def payout_resolve(payout_id: int) -> str | None:
    return services.payout_resolve(payout_id=payout_id)


@shared_task(name="wallets.payout_sweep")
def payout_sweep() -> dict:
    return services.payout_sweep()


@shared_task(name="wallets.noop")
def noop(payout_id: int) -> None:
    """Does nothing: the benchmark's measure of the queue's own cost."""


@shared_task(name="wallets.payout_notify")
def payout_notify(payout_id: int) -> dict:
    """After a terminal state: records the partner webhook and the customer email once, and queues them."""
    from wallets import notifications

    return notifications.payout_notify(payout_id=payout_id)


@shared_task(name="wallets.payout_email_send")
def payout_email_send(notification_id: int, retry: int = 0) -> str | None:
    """Sends one customer email at most once; a passing SES/SMTP problem queues another try, with back-off."""
    from django.conf import settings

    from wallets import notifications

    last_try = retry + 1 >= settings.CEZBEK_EMAIL_MAX_ATTEMPTS
    status = notifications.email_send(notification_id=notification_id, last_try=last_try)
    if status == notifications.Status.PENDING:
        notifications.email_enqueue(
            notification_id=notification_id, countdown=notifications.email_retry_delay(retry=retry), retry=retry + 1
        )
    return status


@shared_task(name="wallets.emails_send_stranded")
def emails_send_stranded() -> int:
    """Periodic (beat): queues the PENDING customer emails whose message never came (a broker outage)."""
    from wallets import notifications

    return notifications.emails_send_stranded()


@shared_task(name="wallets.reward_digest_send")
def reward_digest_send(day: str | None = None, retry_failed: bool = False) -> dict:
    """The nightly reward digest (beat): yesterday's (Asia/Jakarta) unless `day` (YYYY-MM-DD) is given."""
    from datetime import date

    from wallets import digest

    when = date.fromisoformat(day) if day else digest.digest_yesterday()
    return digest.reward_digest_send(day=when, retry_failed=retry_failed).as_dict()
