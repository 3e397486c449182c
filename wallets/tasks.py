"""Thin Celery tasks: take ids, call one service, safe to run twice (claims decide who acts)."""

from celery import shared_task

from wallets import services


@shared_task(name="wallets.payout_deliver")
def payout_deliver(payout_id: int) -> str | None:
    return services.payout_deliver(payout_id=payout_id)


@shared_task(name="wallets.payout_resolve")
def payout_resolve(payout_id: int) -> str | None:
    return services.payout_resolve(payout_id=payout_id)


@shared_task(name="wallets.payout_sweep")
def payout_sweep() -> dict:
    return services.payout_sweep()


@shared_task(name="wallets.noop")
def noop(payout_id: int) -> None:
    """Does nothing: the benchmark's measure of the queue's own cost."""
