"""Thin Celery tasks for loyalty: safe to run twice (an expired state moves once per period of validity)."""

from celery import shared_task
from django.utils import timezone

from loyalty.services import tier_expire_all


@shared_task(name="loyalty.tier_expire_due")
def tier_expire_due(batch_size: int = 1000) -> dict:
    """The daily tier expiry (DOMAIN.md §2 step 2): every state expired by now, set-based, in batches."""
    now = timezone.now()
    moved = tier_expire_all(as_of=now, batch_size=batch_size)
    return {"moved": moved, "as_of": timezone.localtime(now).isoformat()}
