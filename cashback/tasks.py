"""Thin Celery tasks for batch uploads (cashback/batches.py): take ids, call one service, safe to run twice.

They run on a queue of their own (CEZBEK_BATCH_QUEUE), so a big upload never makes the payouts of
live purchases wait behind it; every worker started without -Q consumes both queues.
"""

from celery import shared_task
from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError

from cashback import batches


@shared_task(name="cashback.batch_start", queue=settings.CEZBEK_BATCH_QUEUE)
def batch_start(batch_id: int) -> int:
    """Splits the work: one task per chunk not yet done."""
    return batches.batch_dispatch(batch_id=batch_id)


# A deadlock, a lost connection, a partner_ref inserted meanwhile by another chunk or the API (the
# retry finds it stored: a duplicate or a conflict): the chunk's transaction was rolled back whole,
# so running it again is safe. After the last retry the batch sweeper resumes it.
@shared_task(
    name="cashback.batch_chunk",
    queue=settings.CEZBEK_BATCH_QUEUE,
    autoretry_for=(OperationalError, InterfaceError, IntegrityError),
    retry_backoff=2,
    retry_backoff_max=120,
    max_retries=8,
)
def batch_chunk(batch_id: int, number: int) -> str:
    return batches.batch_chunk_process(batch_id=batch_id, number=number)


@shared_task(name="cashback.batch_resume_stalled")
def batch_resume_stalled() -> int:
    return batches.batch_resume_stalled()
