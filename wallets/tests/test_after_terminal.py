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

    assert len(queued) == 1  # the notification task, refused: the webhook and the email are not tried on that broker
    assert WebhookDelivery.objects.filter(payout=payout, event="payout.succeeded", state="PENDING").count() == 1
    assert EmailNotification.objects.filter(payout=payout, status="PENDING", to="a@b.id").count() == 1
    services._after_terminal(payout.pk)  # once more (a later terminal move): each is still recorded once
    assert WebhookDelivery.objects.filter(payout=payout).count() == 1 and EmailNotification.objects.filter(payout=payout).count() == 1


def test_one_payout_that_cannot_be_recorded_does_not_stop_the_others(monkeypatch):
    from wallets import notifications

    recorded = []

    def record(*, payout_id, enqueue):
        if payout_id == 2:
            raise RuntimeError("database hiccup")
        recorded.append((payout_id, enqueue))

    monkeypatch.setattr(notifications, "payout_notify", record)
    services._notify_here_all([((1,), None, None), ((2,), None, None), ((3,), None, None)])
    assert recorded == [(1, False), (3, False)]  # recorded only: the broker that just failed is not tried again


def test_the_email_sweeper_takes_each_stranded_email_once_and_leaves_old_ones_to_operators(
    partner, wallets, ladder, global_rule, monkeypatch, settings
):
    from datetime import timedelta

    from django.utils import timezone

    from wallets.models import EmailNotification, Payout
    from wallets.notifications import STRANDED_EMAIL_MAX_AGE, email_record, emails_send_stranded

    queued = []
    monkeypatch.setattr("wallets.tasks.payout_email_send.apply_async", lambda args, kwargs, **kw: queued.append((args[0], kwargs)))
    lajada, _ = partner
    now = timezone.now()
    stranded_for = timedelta(seconds=settings.CEZBEK_EMAIL_STRANDED_SECONDS + 60)
    emails = {}
    for ref in ("stranded", "waiting", "sent", "ancient"):
        payout = _payout(lajada, ref=ref, email=f"{ref}@b.id")
        Payout.objects.filter(pk=payout.pk).update(status=Payout.Status.SUCCEEDED)
        payout.refresh_from_db()
        emails[ref] = email_record(payout=payout)
    EmailNotification.objects.filter(pk=emails["stranded"].pk).update(updated_at=now - stranded_for, attempts=2)
    EmailNotification.objects.filter(pk=emails["waiting"].pk).update(updated_at=now - timedelta(hours=1))  # a retry's back-off
    EmailNotification.objects.filter(pk=emails["sent"].pk).update(updated_at=now - stranded_for, status="SENT")
    EmailNotification.objects.filter(pk=emails["ancient"].pk).update(
        updated_at=now - stranded_for, created_at=now - STRANDED_EMAIL_MAX_AGE - timedelta(hours=1)
    )

    assert emails_send_stranded() == 1
    assert queued == [(emails["stranded"].pk, {"retry": 2})]  # its attempts so far count towards the limit
    assert emails_send_stranded() == 0  # its message has not been taken yet: not queued a second time
    assert queued == [(emails["stranded"].pk, {"retry": 2})]
    assert EmailNotification.objects.get(pk=emails["stranded"].pk).status == "PENDING"  # sending claims it, not the sweeper
