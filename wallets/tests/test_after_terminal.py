"""What a terminal payout queues (DOMAIN.md §6): the notification task only when someone is to be told."""

from decimal import Decimal

import pytest

from cashback.services import Purchase, transaction_record
from partners.models import Partner
from wallets import services

pytestmark = pytest.mark.django_db


@pytest.fixture
def published(monkeypatch):
    sent = []
    monkeypatch.setattr("wallets.tasks.payout_notify.apply_async", lambda args, **kw: sent.append(args[0]))
    return sent


def _payout(partner, *, ref: str, email: str = ""):
    txn, created = transaction_record(
        partner=partner,
        purchase=Purchase(partner_ref=ref, msisdn="628118770510", quantity=1, amount=Decimal("100000.00"), wallet="LSAJA", email=email),
    )
    assert created
    return txn.payout


def test_nobody_to_tell_queues_nothing(partner, wallets, ladder, global_rule, published):
    lajada, _ = partner
    payout = _payout(lajada, ref="N/1")
    services._after_terminal(payout.pk)
    assert published == []


def test_a_customer_email_or_a_partner_webhook_queues_the_notifications(partner, wallets, ladder, global_rule, published):
    lajada, _ = partner
    with_email = _payout(lajada, ref="E/1", email="a@b.id")
    services._after_terminal(with_email.pk)
    assert published == [with_email.pk]
    Partner.objects.filter(pk=lajada.pk).update(webhook_url="https://partner.example/hooks")
    without_email = _payout(lajada, ref="W/1")
    services._after_terminal(without_email.pk)
    assert published == [with_email.pk, without_email.pk]


def test_when_the_broker_is_down_the_notifications_are_recorded_here(partner, wallets, ladder, global_rule, monkeypatch):
    from kombu.exceptions import OperationalError

    from partners.models import WebhookDelivery
    from wallets.models import EmailNotification, Payout

    queued = []

    def broker_down(*args, **kwargs):
        queued.append(args)
        raise OperationalError("Error 111 connecting to the broker. Connection refused.")

    for task in ("payout_notify", "payout_email_send"):
        monkeypatch.setattr(f"wallets.tasks.{task}.apply_async", broker_down)
    monkeypatch.setattr("partners.tasks.webhook_deliver.apply_async", broker_down)
    lajada, _ = partner
    Partner.objects.filter(pk=lajada.pk).update(webhook_url="https://partner.example/hooks")
    payout = _payout(lajada, ref="B/1", email="a@b.id")
    Payout.objects.filter(pk=payout.pk).update(status=Payout.Status.SUCCEEDED)

    services._after_terminal(payout.pk)

    assert len(queued) == 3  # the notification task, then the webhook's and the email's: all refused
    assert WebhookDelivery.objects.filter(payout=payout, event="payout.succeeded", state="PENDING").count() == 1
    assert EmailNotification.objects.filter(payout=payout, status="PENDING", to="a@b.id").count() == 1
    services._after_terminal(payout.pk)  # once more (a later terminal move): each is still recorded once
    assert WebhookDelivery.objects.filter(payout=payout).count() == 1 and EmailNotification.objects.filter(payout=payout).count() == 1
