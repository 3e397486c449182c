"""The nightly reward digest (wallets/digest.py): one email per customer address for the payouts that
succeeded that day in Asia/Jakarta, summed to the cent, never twice; payouts delivered for real to the sandbox."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from cashback.services import Purchase, transaction_record
from reports.models import RewardDigest
from wallets.digest import digest_day_bounds, digest_yesterday, reward_digest_send
from wallets.models import Payout, PayoutEvent
from wallets.services import payout_deliver
from wallets.tests.conftest import free_port

S = Payout.Status


@pytest.fixture
def all_of_it(db):
    """A rule paying 100 % of the purchase back: each payout is exactly the purchase amount."""
    from cashback.models import CashbackRule

    return CashbackRule.objects.create(name="all of it", percentage=Decimal("100"), valid_from=timezone.now() - timedelta(days=1))


@pytest.fixture
def paid(make_partner, ladder, all_of_it, routes, breakers_closed):
    """Records a purchase and, unless told not to, delivers its payout over HTTP to the sandbox; returns the payout."""
    partners = {}
    counter = iter(range(1, 10**6))

    def purchase(amount: str, email: str = "", *, partner: str = "LAJADA", wallet: str = "LSAJA", deliver: bool = True) -> Payout:
        if partner not in partners:
            partners[partner] = make_partner(partner)[0]
        n = next(counter)
        txn, _ = transaction_record(
            partner=partners[partner],
            purchase=Purchase(partner_ref=f"DIG-{n}", msisdn=f"62816{n:08d}", quantity=1, amount=Decimal(amount), wallet=wallet, email=email),
        )
        if deliver:
            payout_deliver(payout_id=txn.payout.pk)
        return Payout.objects.select_related("transaction").get(pk=txn.payout.pk)

    return purchase


def on_day(payout: Payout, day) -> None:
    """Moves the payout's success to noon of `day` in Jakarta (what it would be had it been delivered then)."""
    start, _ = digest_day_bounds(day=day)
    PayoutEvent.objects.filter(payout=payout, to_status=S.SUCCEEDED).update(created_at=start + timedelta(hours=12))


def test_one_email_per_address_summed_to_the_cent_without_the_customers_who_gave_none(sandbox, paid):
    today = timezone.localdate()
    rina = [
        paid("1234.56", "rina@example.id"),
        paid("0.01", "Rina@Example.ID", partner="TOKMED", wallet="JOSVO"),  # the same address, another partner
        paid("99.99", "RINA@example.id", wallet="GPAID"),
    ]
    budi = paid("50000.00", "budi@example.id")
    nobody = paid("7777.77")  # no email: no digest
    pending = paid("300.00", "rina@example.id", deliver=False)  # not paid (yet)
    earlier = paid("10.00", "rina@example.id")
    on_day(earlier, today - timedelta(days=1))  # paid yesterday: yesterday's digest
    assert {p.status for p in [*rina, budi, nobody, earlier]} == {S.SUCCEEDED} and pending.status == S.PENDING

    result = reward_digest_send(day=today)

    assert result.as_dict() == {"day": today.isoformat(), "sent": 2, "already": 0, "failed": 0}
    sent = {m.to[0]: m for m in mail.outbox}
    assert sorted(sent) == ["budi@example.id", "rina@example.id"]
    body = sent["rina@example.id"].body
    assert "paid 3 rewards into your e-wallet, IDR 1,334.56 in total" in body
    assert sent["rina@example.id"].subject == f"Your Kezbek rewards of {today.day} {today:%B %Y}: IDR 1,334.56"
    for payout in rina:
        assert payout.transaction.kezbek_ref in body
    assert pending.transaction.kezbek_ref not in body and earlier.transaction.kezbek_ref not in body
    assert "IDR 50,000.00" in sent["budi@example.id"].body
    assert nobody.transaction.kezbek_ref not in body + sent["budi@example.id"].body
    assert sorted(RewardDigest.objects.values_list("email", "day", "payouts", "total", "status")) == [
        ("budi@example.id", today, 1, Decimal("50000.00"), "SENT"),
        ("rina@example.id", today, 3, Decimal("1334.56"), "SENT"),
    ]
    # yesterday's digest has the one payout of yesterday
    mail.outbox.clear()
    assert reward_digest_send(day=today - timedelta(days=1)).sent == 1
    assert [m.to for m in mail.outbox] == [["rina@example.id"]] and "IDR 10.00 in total" in mail.outbox[0].body


def test_a_day_sent_again_sends_nothing(sandbox, paid):
    today = timezone.localdate()
    paid("1000.00", "rina@example.id")
    reward_digest_send(day=today)
    # a payout of the same address succeeds later that day: the day's digest went already
    paid("2000.00", "rina@example.id")

    again = reward_digest_send(day=today)

    assert (again.sent, again.already) == (0, 1)
    assert len(mail.outbox) == 1
    assert RewardDigest.objects.get().total == Decimal("1000.00")


def test_a_failed_sending_is_recorded_and_sent_again_only_when_asked(sandbox, paid, settings):
    today = timezone.localdate()
    paid("1500.00", "rina@example.id")
    paid("2500.00", "budi@example.id")
    # no mail server where the SMTP backend looks: the connection is refused
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port(), 2

    failed = reward_digest_send(day=today)

    assert (failed.sent, failed.failed) == (0, 2)
    rows = list(RewardDigest.objects.values_list("status", "error"))
    assert [status for status, _ in rows] == ["FAILED", "FAILED"]
    assert all(error.startswith("ConnectionRefusedError") for _, error in rows)
    # the nightly run does not send it again by itself (the server may have taken it) …
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert reward_digest_send(day=today).as_dict()["sent"] == 0 and mail.outbox == []
    # … an operator does, deliberately, once
    assert reward_digest_send(day=today, retry_failed=True).sent == 2
    assert reward_digest_send(day=today, retry_failed=True).sent == 0
    assert sorted(m.to[0] for m in mail.outbox) == ["budi@example.id", "rina@example.id"]
    assert set(RewardDigest.objects.values_list("status", "attempts", "error")) == {("SENT", 2, "")}


def test_the_nightly_task_sums_up_yesterday_in_jakarta(sandbox, paid):
    from wallets.tasks import reward_digest_send as task

    yesterday = digest_yesterday()
    payout = paid("4321.09", "rina@example.id")
    on_day(payout, yesterday)
    paid("5.00", "rina@example.id")  # today's: tomorrow night's digest

    assert task() == {"day": yesterday.isoformat(), "sent": 1, "already": 0, "failed": 0}
    assert task() == {"day": yesterday.isoformat(), "sent": 0, "already": 1, "failed": 0}
    assert len(mail.outbox) == 1 and "IDR 4,321.09 in total" in mail.outbox[0].body
    # 00:30 on 1 February in Jakarta is still 31 January in UTC: the night sums up 31 January either way
    assert digest_yesterday(now=datetime(2026, 1, 31, 17, 30, tzinfo=UTC)) == date(2026, 1, 31)
    assert digest_yesterday(now=datetime(2026, 1, 31, 16, 59, tzinfo=UTC)) == date(2026, 1, 30)


def test_a_day_without_payouts_sends_nothing(db):
    assert reward_digest_send(day=timezone.localdate()).as_dict()["sent"] == 0
    assert mail.outbox == [] and not RewardDigest.objects.exists()
