"""The jobs beat runs for loyalty and reports (cezbek/schedule.py), each through the once-per-period runner:
tier expiry, the settlement fetch from the running sandbox, and the monthly invoices. Run twice for one
period, each does its work once."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from cezbek.celery import app
from cezbek.jobs import job_execute
from cezbek.schedule import job_named
from loyalty.models import JourneyEntry, LoyaltyState
from reports.models import Invoice, JobRun, SettlementLine, SettlementRun
from reports.tasks_schedule import SettlementFetchIncomplete, settlement_days, settlements_fetch_due
from reports.tests.conftest import utc_today
from wallets.models import Payout
from wallets.tests.conftest import free_port

PROVIDERS = ["GOPAIDH2H", "JOSVOH2H", "LSAJAH2H", "MTRANS", "XENIT"]


@pytest.fixture(autouse=True)
def tasks_registered():
    app.loader.import_default_modules()  # what a worker does at start: every app's tasks.py


# --- tier expiry -----------------------------------------------------------------------------------


def test_tier_expiry_runs_once_a_day_however_often_it_fires(partner, ladder):
    lajada, _ = partner
    now = timezone.now()
    states = [
        LoyaltyState.objects.create(
            partner=lajada, msisdn=f"62811100{n:04d}", tier=ladder["SILVER"], count=4,
            entered_at=now - timedelta(days=91), expires_at=now - timedelta(days=1),
        )  # fmt: skip
        for n in range(3)
    ]
    job = job_named("tier-expiry")

    first = job_execute(job=job)
    # an hour later a state expires that the day's run did not see: the day's run is done, tomorrow's moves it
    late = LoyaltyState.objects.create(
        partner=lajada, msisdn="628111009999", tier=ladder["SILVER"], count=1,
        entered_at=now - timedelta(days=90), expires_at=now,
    )  # fmt: skip
    second = job_execute(job=job)

    assert (first["ran"], first["result"]["moved"]) == (True, 3)
    assert second["ran"] is False
    assert JourneyEntry.objects.filter(reason="DEMOTED").count() == 3
    assert set(LoyaltyState.objects.filter(pk__in=[s.pk for s in states]).values_list("tier__name", flat=True)) == {"BRONZE"}
    run = JobRun.objects.get(job="tier-expiry")
    assert (run.period, run.status, run.duplicates, run.result["moved"]) == (timezone.localdate().isoformat(), "DONE", 1, 3)
    # the next day's run moves it (as a purchase would have anyway: the outcome never depends on the job)
    tomorrow = timezone.now() + timedelta(days=1)
    assert job_execute(job=job, now=tomorrow)["result"]["moved"] == 1
    late.refresh_from_db()
    assert late.tier_id == ladder["BRONZE"].id


def test_the_tier_expiry_task_alone_is_safe_to_run_twice(partner, ladder):
    from loyalty.tasks import tier_expire_due

    lajada, _ = partner
    now = timezone.now()
    LoyaltyState.objects.create(
        partner=lajada, msisdn="628111000001", tier=ladder["GOLD"], count=2,
        entered_at=now - timedelta(days=181), expires_at=now - timedelta(hours=1),
    )  # fmt: skip

    assert tier_expire_due(batch_size=1)["moved"] == 1
    assert tier_expire_due(batch_size=1)["moved"] == 0
    assert list(JourneyEntry.objects.values_list("tier_before__name", "tier_after__name")) == [("GOLD", "SILVER")]


# --- settlement fetch ------------------------------------------------------------------------------


def test_the_days_fetched_are_the_last_utc_days_oldest_first():
    assert settlement_days(today=date(2026, 3, 1), days=3) == [date(2026, 2, 26), date(2026, 2, 27), date(2026, 2, 28)]
    from cezbek.errors import ValidationFailed

    with pytest.raises(ValidationFailed, match="days"):
        settlement_days(today=date(2026, 3, 1), days=0)


def test_the_fetch_imports_each_providers_sandbox_file_of_a_day_with_real_payouts(sandbox, routes, buy, deliver):
    # real payouts, delivered over HTTP to the sandbox: MTRANS (LSAJA under 50,000), XENIT (LSAJA above), GOPAIDH2H, XENIT (JOSVO)
    paid = [deliver(buy("LSAJA", "10000.00")), deliver(buy("LSAJA", "80000.00")), deliver(buy("GPAID", "8000.00")), deliver(buy("JOSVO", "60000.00"))]
    assert [p.status for p in paid] == [Payout.Status.SUCCEEDED] * 4
    today = date.fromisoformat(utc_today())

    summary = settlements_fetch_due(today=today + timedelta(days=1), days=1)

    assert sorted((i["provider"], i["day"], i["lines"]) for i in summary["imported"]) == [
        ("GOPAIDH2H", today.isoformat(), 1), ("JOSVOH2H", today.isoformat(), 0), ("LSAJAH2H", today.isoformat(), 0),
        ("MTRANS", today.isoformat(), 1), ("XENIT", today.isoformat(), 2),
    ]
    assert (summary["already"], summary["failed"]) == (0, [])
    outcomes = sorted(SettlementLine.objects.values_list("run__provider__code", "outcome", "payout_id"))
    assert outcomes == sorted(
        [("MTRANS", "MATCHED", paid[0].pk), ("XENIT", "MATCHED", paid[1].pk), ("GOPAIDH2H", "MATCHED", paid[2].pk), ("XENIT", "MATCHED", paid[3].pk)]
    )
    run = SettlementRun.objects.get(provider__code="XENIT")
    start = datetime.combine(today, datetime.min.time(), tzinfo=UTC)
    assert (run.period_start, run.period_end, run.period_source, run.file_name) == (start, start + timedelta(days=1), "date given", f"xenit-{today}.csv")
    # fetched again: every provider's day is covered, nothing imported twice
    again = settlements_fetch_due(today=today + timedelta(days=1), days=1)
    assert (again["imported"], again["already"]) == ([], 5)
    assert SettlementRun.objects.count() == 5


def test_the_daily_job_imports_each_provider_day_once_and_leaves_a_day_finance_imported(sandbox, routes):
    from reports.services import settlement_import
    from reports.tests.conftest import settlement_file

    yesterday = date.fromisoformat(utc_today()) - timedelta(days=1)
    name, content = settlement_file(sandbox, "MTRANS", yesterday.isoformat())
    by_hand = settlement_import(provider_code="MTRANS", content=content, file_name=name)  # Finance, in the admin
    job = job_named("settlement-fetch")

    first = job_execute(job=job)
    second = job_execute(job=job)

    assert first["ran"] is True and second["ran"] is False
    assert len(first["result"]["imported"]) == 5 * 3 - 1 and first["result"]["already"] == 1
    runs = list(SettlementRun.objects.values_list("provider__code", "period_start"))
    assert len(runs) == len(set(runs)) == 15
    assert SettlementRun.objects.filter(provider__code="MTRANS", period_start__date=yesterday).get() == by_hand
    assert JobRun.objects.get(job="settlement-fetch").duplicates == 1


def test_a_provider_out_of_reach_fails_the_job_and_a_later_firing_of_the_day_fetches_it(sandbox, routes, settings):
    dead = f"http://127.0.0.1:{free_port()}/xenit"
    settings.CEZBEK_PROVIDERS = {**settings.CEZBEK_PROVIDERS, "XENIT": {**settings.CEZBEK_PROVIDERS["XENIT"], "url": dead}}
    job = job_named("settlement-fetch")

    with pytest.raises(SettlementFetchIncomplete) as failure:
        job_execute(job=job)

    assert [(f["provider"], f["error"]) for f in failure.value.summary["failed"]] == [("XENIT", "XENIT: connection failed before sending")] * 3
    assert SettlementRun.objects.count() == 12 and not SettlementRun.objects.filter(provider__code="XENIT").exists()
    run = JobRun.objects.get(job="settlement-fetch")
    assert run.status == "FAILED" and "XENIT" in run.error
    # the provider answers again: the same day's next firing (or "Run selected tasks") fetches what is missing
    settings.CEZBEK_PROVIDERS = {**settings.CEZBEK_PROVIDERS, "XENIT": {**settings.CEZBEK_PROVIDERS["XENIT"], "url": f"{sandbox.url}/xenit"}}
    retry = job_execute(job=job)
    assert retry["ran"] is True and retry["result"]["already"] == 12
    assert sorted(i["provider"] for i in retry["result"]["imported"]) == ["XENIT"] * 3
    run.refresh_from_db()
    assert (run.status, run.attempts, run.error) == ("DONE", 2, "")
    assert SettlementRun.objects.count() == 15


def test_inactive_providers_are_not_fetched(sandbox, routes):
    routes["JOSVOH2H"].active = False
    routes["JOSVOH2H"].save()

    summary = settlements_fetch_due(days=1)

    assert sorted(i["provider"] for i in summary["imported"]) == ["GOPAIDH2H", "LSAJAH2H", "MTRANS", "XENIT"]


# --- invoices ------------------------------------------------------------------------------------


def test_monthly_invoices_run_once_a_month_and_email_each_partner_once(make_partner, ladder, wallets, all_of_it):
    from cashback.models import Transaction
    from cashback.services import Purchase, transaction_record

    lajada, _ = make_partner("LAJADA", email="finance@lajada.id")
    txn, _ = transaction_record(
        partner=lajada, purchase=Purchase(partner_ref="INV-1", msisdn="628120000001", quantity=1, amount=Decimal("15000.00"), wallet="LSAJA")
    )
    last_month = timezone.now() - timedelta(days=timezone.localdate().day + 1)
    Transaction.objects.filter(pk=txn.pk).update(created_at=last_month)
    job = job_named("partner-invoices-monthly")

    first = job_execute(job=job)
    second = job_execute(job=job)

    assert first["ran"] is True and second["ran"] is False
    assert first["result"]["invoices"] == 1 and first["result"]["emailed"] == 1
    invoice = Invoice.objects.get()
    assert (invoice.partner, invoice.transactions, invoice.purchase_amount) == (lajada, 1, Decimal("15000.00"))
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["finance@lajada.id"]
    assert JobRun.objects.get(job="partner-invoices-monthly").period == f"{timezone.localdate():%Y-%m}"
