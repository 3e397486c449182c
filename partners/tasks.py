"""Thin Celery tasks for partner webhooks (partners/webhooks.py): take ids, safe to run twice (claims decide)."""

from celery import shared_task

from partners import webhooks


@shared_task(name="partners.webhook_deliver")
def webhook_deliver(delivery_id: int) -> str | None:
    """One attempt of a delivery, if it is due and nobody else holds it; retries are the periodic task's."""
    return webhooks.webhook_attempt(delivery_id=delivery_id)


@shared_task(name="partners.webhooks_retry_due")
def webhooks_retry_due() -> dict:
    """Periodic (beat): sends every delivery whose next attempt is due; concurrent runs share the work."""
    return webhooks.webhooks_send_due()
