"""Payout writes (DOMAIN.md §3, §5): every state change with its history row, in one transaction."""

import logging
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from kombu.exceptions import KombuError

from wallets.models import Payout, PayoutEvent

logger = logging.getLogger("cezbek.payouts")


def payout_create(*, transaction_obj, amount: Decimal, now: datetime) -> Payout:
    """A PENDING payout for a transaction, handed to a worker once the database commits."""
    payout = Payout.objects.create(
        transaction=transaction_obj,
        wallet_id=transaction_obj.wallet_id,
        msisdn=transaction_obj.msisdn,
        amount=amount,
        status=Payout.Status.PENDING,
        created_at=now,
    )
    PayoutEvent.objects.create(payout=payout, from_status="", to_status=Payout.Status.PENDING, note="created")
    transaction.on_commit(lambda: payout_enqueue(payout_id=payout.pk))
    return payout


def payout_enqueue(*, payout_id: int) -> None:
    """Queues delivery. A broker outage loses nothing: the sweeper picks up PENDING payouts."""
    from wallets.tasks import payout_deliver

    try:
        payout_deliver.delay(payout_id)
    except KombuError:
        logger.exception("could not queue payout %s; the sweeper will pick it up", payout_id)
