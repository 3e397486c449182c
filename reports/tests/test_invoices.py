"""Monthly partner invoices (DOMAIN.md §7): figures to the cent, the CSV in storage, the email, one per month.

Purchases go through the cashback service and payouts are delivered to the sandbox in this process;
then the test moves their moments to April 2025 (arrangement: the services stamp `now`), around the
edges of the month in Asia/Jakarta.
"""

import json
from datetime import datetime, timedelta
from decimal import Decimal
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from cashback.models import CashbackRule, Transaction
from cashback.services import Purchase, transaction_record
from cezbek.errors import ValidationFailed
from reports.models import Invoice
from reports.services import invoice_generate, invoices_generate_month
from reports.tasks import invoices_monthly
from reports.tests.conftest import stored_files
from wallets.models import Payout, PayoutEvent

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

WIB = ZoneInfo("Asia/Jakarta")
APRIL = datetime(2025, 4, 1).date()
S = Payout.Status


def at(*args) -> datetime:
    return datetime(*args, tzinfo=WIB)


@pytest.fixture
def rule(db):
    """1.5 % cashback, at most 20,000.00."""
    return CashbackRule.objects.create(
        name="1.5% capped", percentage=Decimal("1.50"), max_cashback=Decimal("20000.00"), valid_from=timezone.now() - timedelta(days=1)
    )


@pytest.fixture
def month(make_partner, ladder, rule, wallets, deliver, sandbox):
    """LAJADA's April 2025 (and a little of March and May), TOKMED's one April purchase."""
    lajada, _ = make_partner("LAJADA", email="finance@lajada.id")
    tokmed, _ = make_partner("TOKMED", email="")
    make_partner("BLAPAK", email="ap@blapak.id")  # nothing in April: no invoice
    n = iter(range(1, 1000))

    def purchase(partner, msisdn, amount, bought_at):
        txn, _ = transaction_record(
            partner=partner, purchase=Purchase(partner_ref=f"INV-{next(n)}", msisdn=msisdn, quantity=1, amount=Decimal(amount), wallet="LSAJA")
        )
        Transaction.objects.filter(pk=txn.pk).update(created_at=bought_at)
        return txn

    def paid(txn, succeeded_at):
        payout = deliver(txn.payout)
        assert payout.status == S.SUCCEEDED and payout.provider.code == "MTRANS"
        PayoutEvent.objects.filter(payout=payout, to_status=S.SUCCEEDED).update(created_at=succeeded_at)
        return payout

    a, b = "628111000001", "628111000002"
    # (purchase, cashback 1.5 % half-up capped, BRONZE reward on the 5th; payout fee MTRANS 500 + 0.5 %)
    late_march = purchase(lajada, b, "80000.00", at(2025, 3, 31, 23, 59, 59))  # cashback 1,200.00
    first = purchase(lajada, a, "333333.33", at(2025, 4, 1, 0, 0, 0))  # 4,999.99995 → 5,000.00
    second = purchase(lajada, a, "100000.00", at(2025, 4, 10, 12, 0))  # 1,500.00
    third = purchase(lajada, a, "2000000.00", at(2025, 4, 15, 9, 30))  # 30,000 → capped 20,000.00
    fourth = purchase(lajada, a, "10050.50", at(2025, 4, 20, 18, 0))  # 150.7575 → 150.76
    fifth = purchase(lajada, a, "50000.00", at(2025, 4, 30, 23, 59, 59))  # 750.00 + reward 5,000.00
    purchase(lajada, b, "90000.00", at(2025, 5, 1, 0, 0, 0))  # April 30, 17:00 UTC, but May in Jakarta
    purchase(tokmed, b, "40000.00", at(2025, 4, 2, 8, 0))  # 600.00, never paid
    assert [t.cashback for t in (first, second, third, fourth, fifth)] == [Decimal(x) for x in ("5000.00", "1500.00", "20000.00", "150.76", "750.00")]
    assert fifth.reward == Decimal("5000.00")
    # payouts: March's succeeds in the first seconds of April; the 5th's in the first seconds of May
    paid(late_march, at(2025, 4, 1, 0, 0, 10))  # 1,200.00, fee 506.00
    paid(first, at(2025, 4, 1, 0, 5))  # 5,000.00, fee 525.00
    paid(second, at(2025, 4, 10, 12, 1))  # 1,500.00, fee 507.50
    paid(third, at(2025, 4, 30, 23, 59, 59))  # 20,000.00, fee 600.00
    paid(fifth, at(2025, 5, 1, 0, 0, 5))  # 5,750.00: May's
    sandbox.faults({code: {"refuse_rate": 1} for code in ("MTRANS", "XENIT", "LSAJAH2H")})
    assert deliver(fourth.payout).status == S.FAILED
    return {"LAJADA": lajada, "TOKMED": tokmed}


LAJADA_APRIL_CSV = (
    "invoice,partner,partner_name,month,period_start,period_end,currency,transactions,purchase_amount,cashback,reward,"
    "payouts_succeeded,payouts_succeeded_amount,provider_fees,generated_at\n"
    "CZB-LAJADA-2025-04,LAJADA,Lajada,2025-04,2025-04-01T00:00:00+07:00,2025-05-01T00:00:00+07:00,IDR,"
    "5,2493383.83,27400.76,5000.00,4,27700.00,2138.50,{generated}\n"
)


def test_an_invoice_has_the_months_figures_to_the_cent_in_storage_and_in_the_partners_mail(month, media_root):
    result = invoice_generate(partner=month["LAJADA"], month=APRIL)

    invoice = result.invoice
    assert (result.changed, result.emailed) == (True, True)
    assert (invoice.transactions, invoice.purchase_amount, invoice.cashback, invoice.reward) == (
        5, Decimal("2493383.83"), Decimal("27400.76"), Decimal("5000.00")
    )
    assert (invoice.payouts_succeeded, invoice.payouts_succeeded_amount, invoice.provider_fees) == (4, Decimal("27700.00"), Decimal("2138.50"))
    assert (invoice.period_start, invoice.period_end) == (at(2025, 4, 1), at(2025, 5, 1))
    expected = LAJADA_APRIL_CSV.format(generated=invoice.generated_at.astimezone(WIB).isoformat(timespec="seconds"))
    # the CSV is in storage…
    assert invoice.file.name.startswith("invoices/2025-04/CZB-LAJADA-2025-04-")
    with default_storage.open(invoice.file.name) as stored:
        assert stored.read().decode() == expected
    assert stored_files(media_root) == [invoice.file.name]
    # …and in the partner's mail
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["finance@lajada.id"]
    assert message.subject == "Cezbek invoice CZB-LAJADA-2025-04 (April 2025)"
    assert message.attachments == [("cezbek-invoice-LAJADA-2025-04.csv", expected, "text/csv")]
    assert "IDR 27,400.76" in message.body
    invoice.refresh_from_db()
    assert (invoice.emailed_to, invoice.email_error) == ("finance@lajada.id", "") and invoice.emailed_at is not None


def test_generating_a_month_again_keeps_one_invoice_and_replaces_it_only_when_figures_change(month, media_root, django_capture_on_commit_callbacks):
    first = invoice_generate(partner=month["LAJADA"], month=APRIL).invoice
    # again, nothing changed: the same invoice and file, no second email
    again = invoice_generate(partner=month["LAJADA"], month=APRIL)
    assert (again.changed, again.emailed, again.invoice.pk, again.invoice.file.name) == (False, False, first.pk, first.file.name)
    assert len(mail.outbox) == 1
    # a purchase of April recorded late: the figures change, the file is replaced, the partner told again
    txn, _ = transaction_record(
        partner=month["LAJADA"], purchase=Purchase(partner_ref="LATE", msisdn="628111000009", quantity=1, amount=Decimal("1000.00"), wallet="LSAJA")
    )
    Transaction.objects.filter(pk=txn.pk).update(created_at=at(2025, 4, 25, 10, 0))
    with django_capture_on_commit_callbacks(execute=True):  # the old file goes once the new one is committed
        replaced = invoice_generate(partner=month["LAJADA"], month=APRIL)
    assert (replaced.changed, replaced.emailed, replaced.invoice.pk) == (True, True, first.pk)
    assert (replaced.invoice.transactions, replaced.invoice.purchase_amount, replaced.invoice.cashback) == (6, Decimal("2494383.83"), Decimal("27415.76"))
    assert Invoice.objects.filter(partner=month["LAJADA"], month=APRIL).count() == 1
    assert stored_files(media_root) == [replaced.invoice.file.name] != [first.file.name]
    assert len(mail.outbox) == 2 and ",6,2494383.83,27415.76," in mail.outbox[1].attachments[0][1]


def test_the_month_run_invoices_every_partner_with_activity_and_emails_whom_it_can(month):
    results = invoices_generate_month(month=APRIL)

    assert [(r.invoice.partner.code, r.invoice.transactions, r.invoice.cashback, r.invoice.payouts_succeeded, r.emailed) for r in results] == [
        ("LAJADA", 5, Decimal("27400.76"), 4, True),
        ("TOKMED", 1, Decimal("600.00"), 0, False),
    ]
    tokmed = results[1].invoice
    assert (tokmed.emailed_at, tokmed.email_error) == (None, "the partner has no email address")
    assert default_storage.exists(tokmed.file.name)
    assert [m.to for m in mail.outbox] == [["finance@lajada.id"]]
    # March: the purchase of March 31 23:59:59 WIB, whose payout succeeded in April
    march = invoices_generate_month(month=datetime(2025, 3, 1).date())
    assert [(r.invoice.partner.code, r.invoice.transactions, r.invoice.purchase_amount, r.invoice.payouts_succeeded) for r in march] == [
        ("LAJADA", 1, Decimal("80000.00"), 0)
    ]


def test_a_month_that_has_not_ended_is_refused(db):
    this_month = timezone.localtime(timezone.now(), WIB).date().replace(day=1)
    with pytest.raises(ValidationFailed, match="has not ended yet"):
        invoices_generate_month(month=this_month)
    assert Invoice.objects.count() == 0


def test_the_command_and_the_task(month, media_root):
    out = StringIO()
    call_command("invoice_partners", "--month", "2025-04", "--partner", "LAJADA", "--json", stdout=out)
    document = json.loads(out.getvalue())
    invoice = Invoice.objects.get()
    assert document == {
        "month": "2025-04",
        "invoices": [
            {
                "partner": "LAJADA",
                "invoice": "CZB-LAJADA-2025-04",
                "transactions": 5,
                "purchase_amount": "2493383.83",
                "cashback": "27400.76",
                "reward": "5000.00",
                "payouts_succeeded": 4,
                "payouts_succeeded_amount": "27700.00",
                "provider_fees": "2138.50",
                "file": invoice.file.name,
                "changed": True,
                "emailed": True,
                "email_error": "",
            }
        ],
    }
    # bad input: a one-line reason, nothing written
    for args, reason in [
        (["--month", "2025-13"], "is not a month"),
        (["--month", "April"], "is not a month"),
        (["--month", "2025-04", "--partner", "NOPE"], "no partner with code 'NOPE'"),
        (["--month", f"{timezone.localtime(timezone.now(), WIB):%Y-%m}"], "has not ended yet"),
    ]:
        with pytest.raises(CommandError, match=reason):
            call_command("invoice_partners", *args, stdout=StringIO())
    assert Invoice.objects.count() == 1
    # the beat task: every partner of the month, safe to run twice (LAJADA is not emailed again)
    assert invoices_monthly("2025-04") == {"month": "2025-04", "invoices": 2, "changed": 1, "emailed": 0}
    assert invoices_monthly("2025-04") == {"month": "2025-04", "invoices": 2, "changed": 0, "emailed": 0}
    assert Invoice.objects.count() == 2 and len(mail.outbox) == 1


def test_beat_invoices_the_previous_month_on_the_first_in_jakarta():
    from celery.schedules import crontab
    from django.conf import settings

    from cezbek.celery import app

    app.loader.import_default_modules()
    entry = app.conf.beat_schedule["partner-invoices-monthly"]
    assert entry["task"] == "reports.invoices_monthly" and entry["task"] in app.tasks
    assert entry["schedule"] == crontab(minute=0, hour=2, day_of_month=1)
    assert settings.CELERY_TIMEZONE == "Asia/Jakarta"
    from reports.selectors import previous_month

    # 2025-05-01 00:30 in Jakarta is still April 30 in UTC: the previous month is April either way,
    # and on 2025-01-01 it is December of the year before
    assert previous_month(now=at(2025, 5, 1, 0, 30), tz=WIB) == APRIL
    assert previous_month(now=at(2025, 1, 1, 2, 0), tz=WIB) == datetime(2024, 12, 1).date()
