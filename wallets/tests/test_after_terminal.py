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
