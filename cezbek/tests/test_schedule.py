"""Periodic jobs (issue 5): the one list in code, its sync into django-celery-beat (operator changes kept),
the once-per-period claim, and two real beats against the test database not doubling anything."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask, PeriodicTasks

from cezbek.celery import app
from cezbek.jobs import DatabaseScheduler, job_execute, job_run_once, run_job
from cezbek.schedule import DAY, INTERVAL, MONTH, RUNNER_TASK, At, Every, Job, jobs, period_key, schedule_sync
from reports.models import JobRun, RewardDigest, ScheduledJob, SettlementRun
from wallets.tests.conftest import routes, sandbox, sandbox_process, wait_for  # noqa: F401 (fixtures)

NAMES = [
    "payout-sweeper", "batch-sweeper", "webhook-retries", "email-sweeper", "tier-expiry", "settlement-fetch", "reward-digest",
    "partner-invoices-monthly",
]


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def row(name: str) -> PeriodicTask:
    return PeriodicTask.objects.select_related("interval", "crontab").get(name=name)


def by_name(changes) -> dict:
    return {change.name: change for change in changes}


# --- the list and its sync -------------------------------------------------------------------------


@pytest.mark.django_db
def test_after_migrate_beats_table_holds_every_job_of_the_code():
    # the test database was migrated: post_migrate synced it (settings of an earlier test may differ: sync once more)
    schedule_sync()
    tasks = {t.name: t for t in PeriodicTask.objects.select_related("interval", "crontab")}
    assert set(NAMES) <= set(tasks)
    assert [job.name for job in jobs()] == NAMES
    for job in jobs():
        task = tasks[job.name]
        assert (task.task, json.loads(task.kwargs), task.enabled) == (RUNNER_TASK, {"job": job.name}, True)
        assert job.task in task.description
    assert (tasks["payout-sweeper"].interval.every, tasks["payout-sweeper"].interval.period) == (30, "seconds")
    assert tasks["webhook-retries"].interval.every == 30 and tasks["batch-sweeper"].interval.every == 60
    assert (tasks["email-sweeper"].interval.every, tasks["email-sweeper"].interval.period) == (600, "seconds")
    invoices = tasks["partner-invoices-monthly"].crontab
    assert (invoices.minute, invoices.hour, invoices.day_of_month, str(invoices.timezone)) == ("0", "2", "1", "Asia/Jakarta")
    expiry, fetch, digest = (tasks[n].crontab for n in ("tier-expiry", "settlement-fetch", "reward-digest"))
    assert [(c.hour, c.minute) for c in (expiry, fetch, digest)] == [("0", "5"), ("8", "0"), ("0", "30")]
    assert sorted(ScheduledJob.objects.values_list("name", flat=True)) == sorted(NAMES)
    # the webhook retries are scheduled by name, whether or not partners.webhooks_retry_due is deployed yet
    assert next(j for j in jobs() if j.name == "webhook-retries").task == "partners.webhooks_retry_due"


@pytest.mark.django_db
def test_sync_is_idempotent():
    schedule_sync()
    before = {t.name: (t.pk, t.interval_id, t.crontab_id, t.kwargs, t.description) for t in PeriodicTask.objects.all()}
    changed_at = PeriodicTasks.last_change()
    schedules = (IntervalSchedule.objects.count(), CrontabSchedule.objects.count())

    changes = schedule_sync()

    assert {c.action for c in changes} == {"unchanged"} and len(changes) == len(NAMES)
    after = {t.name: (t.pk, t.interval_id, t.crontab_id, t.kwargs, t.description) for t in PeriodicTask.objects.all()}
    assert after == before
    assert PeriodicTasks.last_change() == changed_at  # no running beat is told to reload
    assert (IntervalSchedule.objects.count(), CrontabSchedule.objects.count()) == schedules


@pytest.mark.django_db
def test_a_job_an_operator_disabled_stays_disabled():
    schedule_sync()
    task = row("reward-digest")
    task.enabled = False
    task.save()

    change = by_name(schedule_sync())["reward-digest"]

    assert row("reward-digest").enabled is False
    assert change.action == "unchanged" and "disabled by an operator: kept disabled" in change.notes


@pytest.mark.django_db
def test_a_timing_an_operator_changed_is_kept_and_one_left_alone_follows_the_code(settings):
    schedule_sync()
    # an operator moves the tier expiry to 03:15 in the admin
    task = row("tier-expiry")
    task.crontab = CrontabSchedule.objects.create(minute="15", hour="3", timezone="Asia/Jakarta")
    task.save()
    # and the code's sweeper interval changes (CEZBEK_SWEEP_INTERVAL_SECONDS)
    settings.CEZBEK_SWEEP_INTERVAL_SECONDS = 10.0

    changes = by_name(schedule_sync())

    expiry = row("tier-expiry").crontab
    assert (expiry.hour, expiry.minute) == ("3", "15")
    assert changes["tier-expiry"].notes == [
        "timing kept as an operator set it: crontab 15 3 * * * Asia/Jakarta (code: crontab 5 0 * * * Asia/Jakarta)"
    ]
    sweeper = row("payout-sweeper")
    assert (sweeper.interval.every, sweeper.interval.period) == (10, "seconds")
    assert changes["payout-sweeper"].action == "updated" and changes["payout-sweeper"].notes == ["timing every 30 seconds → every 10 seconds"]

    # the operator slows the sweeper down to 45 s: a later code change no longer overrides that
    sweeper.interval = IntervalSchedule.objects.create(every=45, period="seconds")
    sweeper.save()
    settings.CEZBEK_SWEEP_INTERVAL_SECONDS = 20.0
    schedule_sync()
    assert row("payout-sweeper").interval.every == 45
    # set back to what sync wrote (10 s), the job follows the code again
    sweeper = row("payout-sweeper")
    sweeper.interval = IntervalSchedule.objects.get(every=10, period="seconds")
    sweeper.save()
    schedule_sync()
    assert row("payout-sweeper").interval.every == 20
    assert row("tier-expiry").crontab.hour == "3"


@pytest.mark.django_db
def test_what_the_code_owns_is_rewritten_by_sync():
    schedule_sync()
    task = row("settlement-fetch")
    task.kwargs = json.dumps({"job": "tier-expiry"})
    task.task = "reports.settlements_fetch"
    task.description = "edited"
    task.save()

    change = by_name(schedule_sync())["settlement-fetch"]

    task = row("settlement-fetch")
    assert (task.task, json.loads(task.kwargs)) == (RUNNER_TASK, {"job": "settlement-fetch"})
    assert task.description.startswith("Fetches each active provider's settlement file")
    assert change.action == "updated"
    assert set(change.notes) == {"task rewritten from code", "kwargs rewritten from code", "description rewritten from code"}


@pytest.mark.django_db
def test_a_job_dropped_from_the_code_loses_its_row_and_rows_sync_never_made_stay():
    schedule_sync()
    own = PeriodicTask.objects.create(
        name="ops: warm the cache", task="wallets.noop", interval=IntervalSchedule.objects.create(every=5, period="minutes")
    )
    fewer = tuple(job for job in jobs() if job.name != "batch-sweeper")

    changes = by_name(schedule_sync(jobs_in_code=fewer))

    assert changes["batch-sweeper"].action == "removed"
    assert not PeriodicTask.objects.filter(name="batch-sweeper").exists()
    assert not ScheduledJob.objects.filter(name="batch-sweeper").exists()
    assert PeriodicTask.objects.filter(pk=own.pk).exists()
    # back in the code: created again, enabled
    assert by_name(schedule_sync())["batch-sweeper"].action == "created"
    assert row("batch-sweeper").enabled is True


@pytest.mark.django_db
def test_a_row_deleted_in_the_admin_comes_back_at_the_next_sync():
    schedule_sync()
    row("tier-expiry").delete()

    change = by_name(schedule_sync())["tier-expiry"]

    assert change.action == "created"
    assert change.notes == ["its row had been deleted: created again (disable a job rather than delete it)"]
    assert ScheduledJob.objects.get(name="tier-expiry").periodic_task == row("tier-expiry")


@pytest.mark.django_db(transaction=True)  # the scheduler commits and closes connections as it reads
def test_beat_reads_only_the_synced_rows_and_the_file_schedule_has_the_same_names():
    schedule_sync()
    task = row("reward-digest")
    task.crontab = CrontabSchedule.objects.create(minute="0", hour="7", timezone="Asia/Jakarta")
    task.save()
    PeriodicTask.objects.filter(name="batch-sweeper").update(enabled=False)

    scheduler = DatabaseScheduler(app=app)

    # CELERY_BEAT_SCHEDULE was not written into the table: the operator's 07:00 stands, nothing was added
    assert row("reward-digest").crontab.hour == "7"
    assert not PeriodicTask.objects.filter(name="celery.backend_cleanup").exists()
    # (django-celery-beat loads crontab rows only within two hours of their time: the interval jobs are always there)
    assert {"payout-sweeper", "webhook-retries", "email-sweeper"} <= set(scheduler.schedule) <= set(NAMES) - {"batch-sweeper"}
    assert {entry.task for entry in scheduler.schedule.values()} == {RUNNER_TASK}
    # celery's file scheduler (worker -B, the e2e tests): the same jobs under the same names, never two names for one
    assert list(django_settings.CELERY_BEAT_SCHEDULE) == NAMES
    assert django_settings.CELERY_BEAT_SCHEDULE["payout-sweeper"]["task"] == "wallets.payout_sweep"
    app.loader.import_default_modules()
    assert RUNNER_TASK in app.tasks and "loyalty.tier_expire_due" in app.tasks and "wallets.reward_digest_send" in app.tasks


@pytest.mark.django_db
def test_the_command_lists_and_syncs():
    schedule_sync()
    task = row("tier-expiry")
    task.enabled = False
    task.save()

    out = StringIO()
    call_command("cezbek_schedule", "list", "--json", stdout=out)
    listed = {j["name"]: j for j in json.loads(out.getvalue())["jobs"]}
    assert list(listed) == NAMES
    assert listed["tier-expiry"]["enabled"] is False
    assert listed["tier-expiry"]["timing"] == listed["tier-expiry"]["code_timing"] == "crontab 5 0 * * * Asia/Jakarta"
    assert listed["payout-sweeper"]["last_run"] is None

    out = StringIO()
    call_command("cezbek_schedule", "sync", "--json", stdout=out)
    changes = {c["name"]: c for c in json.loads(out.getvalue())["changes"]}
    assert changes["tier-expiry"]["action"] == "unchanged" and changes["tier-expiry"]["notes"] == ["disabled by an operator: kept disabled"]

    text = StringIO()
    call_command("cezbek_schedule", "list", stdout=text)
    assert "tier-expiry" in text.getvalue() and "DISABLED" in text.getvalue()
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("cezbek_schedule", "run", stdout=StringIO())
    assert row("tier-expiry").enabled is False


# --- the period and the claim ----------------------------------------------------------------------

DAILY = Job(name="test-daily", task="wallets.noop", schedule=At(minute="0", hour="1"), period=DAY, description="")
MONTHLY = Job(name="test-monthly", task="wallets.noop", schedule=At(minute="0", hour="2", day_of_month="1"), period=MONTH, description="")
EVERY_30 = Job(name="test-30s", task="wallets.noop", schedule=Every(30), period=INTERVAL, lease_seconds=30, description="")


def test_periods_are_jakarta_days_months_and_interval_slots():
    # 17:30 UTC on 31 January is 00:30 on 1 February in Jakarta
    assert period_key(job=DAILY, now=utc(2026, 1, 31, 17, 30)) == "2026-02-01"
    assert period_key(job=DAILY, now=utc(2026, 1, 31, 16, 59)) == "2026-01-31"
    assert period_key(job=MONTHLY, now=utc(2026, 1, 31, 17, 30)) == "2026-02"
    assert period_key(job=EVERY_30, now=utc(2026, 1, 31, 3, 0, 29)) == "2026-01-31T10:00:00+07:00"
    assert period_key(job=EVERY_30, now=utc(2026, 1, 31, 3, 0, 30)) == "2026-01-31T10:00:30+07:00"
    half = Job(name="half", task="x", schedule=Every(0.5), period=INTERVAL, description="")
    assert period_key(job=half, now=utc(2026, 1, 31, 3, 0, 0, 700_000)) == "2026-01-31T10:00:00.500+07:00"


class Body:
    def __init__(self, fail: bool = False):
        self.calls, self.fail = 0, fail

    def __call__(self):
        self.calls += 1
        if self.fail:
            raise RuntimeError("provider down")
        return {"moved": self.calls}


@pytest.mark.django_db
def test_two_firings_of_one_period_run_the_body_once():
    body = Body()
    now = utc(2026, 3, 1, 1, 0)

    first = job_run_once(job=DAILY, body=body, now=now)
    second = job_run_once(job=DAILY, body=body, now=now + timedelta(hours=5))

    assert body.calls == 1
    assert (first["ran"], first["result"], second["ran"]) == (True, {"moved": 1}, False)
    run = JobRun.objects.get(job="test-daily")
    assert (run.period, run.status, run.attempts, run.duplicates, run.result) == ("2026-03-01", "DONE", 1, 1, {"moved": 1})
    # the next day is another period
    assert job_run_once(job=DAILY, body=body, now=now + timedelta(days=1))["ran"] is True
    assert body.calls == 2


@pytest.mark.django_db
def test_a_failed_period_runs_again_and_then_only_once():
    now = utc(2026, 3, 1, 1, 0)
    with pytest.raises(RuntimeError, match="provider down"):
        job_run_once(job=DAILY, body=Body(fail=True), now=now)
    run = JobRun.objects.get(job="test-daily")
    assert (run.status, run.error) == ("FAILED", "RuntimeError: provider down")

    body = Body()
    assert job_run_once(job=DAILY, body=body, now=now + timedelta(minutes=5))["ran"] is True
    assert job_run_once(job=DAILY, body=body, now=now + timedelta(minutes=6))["ran"] is False
    run.refresh_from_db()
    assert (body.calls, run.status, run.attempts, run.duplicates, run.error) == (1, "DONE", 2, 1, "")


@pytest.mark.django_db
def test_a_run_whose_worker_died_is_taken_over_only_after_its_lease():
    now = utc(2026, 3, 1, 1, 0)
    JobRun.objects.create(job="test-daily", period="2026-03-01", status="RUNNING", started_at=now, runner="dead:1")
    body = Body()

    assert job_run_once(job=DAILY, body=body, now=now + timedelta(minutes=30))["ran"] is False
    assert job_run_once(job=DAILY, body=body, now=now + timedelta(seconds=DAILY.lease_seconds + 1))["ran"] is True

    run = JobRun.objects.get(job="test-daily")
    assert (body.calls, run.status, run.attempts, run.duplicates) == (1, "DONE", 2, 1)
    assert run.runner != "dead:1"


@pytest.mark.django_db
def test_interval_jobs_run_once_per_slot_and_old_rows_are_pruned(settings):
    settings.CEZBEK_JOB_RUNS_KEEP_DAYS = 7
    body = Body()
    start = utc(2026, 3, 1, 3, 0, 0)
    JobRun.objects.create(job="test-30s", period="old", status="DONE", started_at=start - timedelta(days=8))
    JobRun.objects.create(job="test-daily", period="2026-02-01", status="DONE", started_at=start - timedelta(days=28))

    ran = [job_run_once(job=EVERY_30, body=body, now=start + timedelta(seconds=s))["ran"] for s in (0, 12, 29, 30, 45, 61)]

    assert ran == [True, False, False, True, False, True]
    assert list(JobRun.objects.filter(job="test-30s").order_by("started_at").values_list("period", "duplicates")) == [
        ("2026-03-01T10:00:00+07:00", 2), ("2026-03-01T10:00:30+07:00", 1), ("2026-03-01T10:01:00+07:00", 0)
    ]
    assert JobRun.objects.filter(job="test-daily").count() == 1  # daily rows are the audit: kept


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_firings_on_postgresql_run_the_body_once():
    calls = []
    barrier = threading.Barrier(4)
    now = utc(2026, 3, 1, 1, 0)

    def body():
        calls.append(1)
        time.sleep(0.3)
        return {"ok": True}

    def fire():
        try:
            barrier.wait(5)
            job_run_once(job=DAILY, body=body, now=now)
        finally:
            connection.close()

    threads = [threading.Thread(target=fire) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)

    assert len(calls) == 1
    run = JobRun.objects.get(job="test-daily")
    assert (run.status, run.attempts, run.duplicates) == ("DONE", 1, 3)


@pytest.mark.django_db
def test_a_job_whose_task_is_not_deployed_claims_nothing():
    missing = Job(name="test-missing", task="nobody.no_such_task", schedule=Every(30), period=INTERVAL, description="")

    outcome = job_execute(job=missing)

    assert outcome["ran"] is False and outcome["skipped"] == "task nobody.no_such_task not registered"
    assert not JobRun.objects.filter(job="test-missing").exists()
    assert run_job("no-such-job")["skipped"] == "unknown job"


@pytest.mark.django_db
def test_the_runner_runs_the_jobs_task_in_process_once(settings):
    app.loader.import_default_modules()
    settings.CEZBEK_SWEEP_INTERVAL_SECONDS = 3600.0  # one slot for the whole test

    first, second = run_job("payout-sweeper"), run_job("payout-sweeper")

    assert first["ran"] is True and first["result"] == {"pending": 0, "stale_sending": 0, "resolve": 0}
    assert second["ran"] is False
    assert JobRun.objects.get(job="payout-sweeper").duplicates == 1


# --- two real beats ------------------------------------------------------------------------------

BEATS_APPLICATION_NAME = "cezbek-two-beats-test"
ROOT = django_settings.BASE_DIR


def _paid_yesterday(*, partner, wallet, provider, tier, email: str, amount: str) -> None:
    """A purchase whose payout reached SUCCEEDED yesterday at noon in Jakarta (rows as delivery leaves them)."""
    from cashback.models import Transaction
    from wallets.models import Payout, PayoutEvent

    noon = datetime.combine(datetime.now(ZoneInfo("Asia/Jakarta")).date() - timedelta(days=1), datetime.min.time(), ZoneInfo("Asia/Jakarta")) + timedelta(hours=12)
    n = Transaction.objects.count() + 1
    value = Decimal(amount)
    txn = Transaction.objects.create(
        kezbek_ref=f"KZBEATS{n:08d}", partner=partner, partner_ref=f"BEATS-{n}", msisdn=f"62815{n:08d}", email=email,
        quantity=1, amount=value, wallet=wallet, cashback=value, reward=Decimal("0.00"), total=value, tier=tier,
        tier_count=1, created_at=noon - timedelta(minutes=1),
    )
    payout = Payout.objects.create(
        transaction=txn, wallet=wallet, msisdn=txn.msisdn, amount=value, status=Payout.Status.SUCCEEDED,
        provider=provider, reference=f"{txn.kezbek_ref}-{provider.code}", created_at=noon - timedelta(minutes=1),
    )
    event = PayoutEvent.objects.create(payout=payout, from_status=Payout.Status.SENDING, to_status=Payout.Status.SUCCEEDED)
    PayoutEvent.objects.filter(pk=event.pk).update(created_at=noon)


def _start(args: list[str], env: dict, log_path):
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "cezbek", *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_started(process, log_path, ready: bytes) -> None:
    wait_for(lambda: ready in log_path.read_bytes() or process.poll() is not None, 60, f"{log_path.name} to start")
    assert process.poll() is None, log_path.read_text()[-3000:]


def _stop(process) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            pass
    try:  # pool children that outlived their parent still hold database sessions
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(10)


def _sessions() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s",
            [BEATS_APPLICATION_NAME],
        )
        return cursor.fetchone()[0]


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_two_beats_firing_every_second_do_each_periods_work_once(sandbox, routes, ladder, make_partner, settings, tmp_path):
    """Two `celery beat` processes (the database scheduler) and one worker, against the test database: every job
    fires every second from both beats for several seconds, and each period's side effect happens exactly once."""
    from wallets.models import Wallet

    lajada, _ = make_partner("LAJADA")
    lsaja = Wallet.objects.get(code="LSAJA")
    for amount in ("1234.56", "0.01"):
        _paid_yesterday(partner=lajada, wallet=lsaja, provider=routes["MTRANS"], tier=ladder["BRONZE"], email="Rina@Example.ID", amount=amount)
    _paid_yesterday(partner=lajada, wallet=lsaja, provider=routes["MTRANS"], tier=ladder["BRONZE"], email="", amount="500.00")

    # the sweeper every second from the code's setting; every other job moved to every second by an "operator"
    settings.CEZBEK_SWEEP_INTERVAL_SECONDS = 1.0
    schedule_sync()
    every_second = IntervalSchedule.objects.create(every=1, period="seconds")
    for task in PeriodicTask.objects.filter(name__in=NAMES).exclude(name="payout-sweeper"):
        task.crontab, task.interval = None, every_second
        task.save()

    mail_dir = tmp_path / "mail"
    (tmp_path / "beats_test_settings.py").write_text(
        "from cezbek.settings import *  # noqa: F401,F403\n"
        "EMAIL_BACKEND = 'django.core.mail.backends.filebased.EmailBackend'\n"
        f"EMAIL_FILE_PATH = {str(mail_dir)!r}\n"
    )
    db = connection.settings_dict
    queue = f"{os.environ.get('CEZBEK_QUEUE', 'celery')}.two-beats-{os.getpid()}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "beats_test_settings",
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}?application_name={BEATS_APPLICATION_NAME}",
        "CEZBEK_QUEUE": queue,
        "CEZBEK_SWEEP_INTERVAL_SECONDS": "1",
        "CEZBEK_SANDBOX_URL": sandbox.url,
        "CEZBEK_LOG_FORMAT": "plain",
    }
    for code in settings.CEZBEK_PROVIDERS:
        env.pop(f"CEZBEK_PROVIDER_{code}_URL", None)

    worker_log, beat_logs = tmp_path / "worker.log", [tmp_path / "beat-1.log", tmp_path / "beat-2.log"]
    processes = []
    try:
        processes.append(_start(
            ["worker", "-l", "info", "-P", "prefork", "-c", "2", "-Q", queue, "--without-gossip", "--without-mingle",
             "--without-heartbeat", "-n", f"two-beats-{os.getpid()}@%h"],
            env, worker_log,
        ))
        processes += [_start(["beat", "-l", "info", "--max-interval", "1"], env, log) for log in beat_logs]
        for process, log, ready in zip(processes, [worker_log, *beat_logs], [b" ready.", b"beat: Starting...", b"beat: Starting..."]):
            _wait_started(process, log, ready)

        def everything_done():
            runs = set(JobRun.objects.filter(status="DONE").values_list("job", flat=True))
            return (
                SettlementRun.objects.count() == 15
                and RewardDigest.objects.filter(status="SENT").exists()
                and {"tier-expiry", "partner-invoices-monthly", "settlement-fetch", "reward-digest"} <= runs
                and JobRun.objects.filter(job="payout-sweeper", status="DONE").count() >= 6
            )

        wait_for(everything_done, 90, "every job's first run", interval=0.5)
        time.sleep(4)  # both beats keep firing every job for a few more periods
        for process in processes[1:]:
            _stop(process)
        # let the worker finish what the beats sent
        wait_for(lambda: not JobRun.objects.filter(status="RUNNING").exists(), 30, "the last runs to finish")
        time.sleep(2)
    finally:
        for process in reversed(processes):
            _stop(process)
        wait_for(lambda: _sessions() == 0, 20, "the processes' database sessions to close")
        with app.connection_for_write() as conn:  # what the beats sent and no worker took: not for other tests
            for name in (queue, f"{queue}.batches"):
                conn.default_channel.queue_purge(name)

    fired = {log.name: len(re.findall(rb"Sending due task reward-digest", log.read_bytes())) for log in beat_logs}
    assert all(n >= 3 for n in fired.values()), fired  # both beats fired it, again and again

    # daily and monthly jobs: one run, every other firing counted as a duplicate
    for name in ("tier-expiry", "settlement-fetch", "reward-digest", "partner-invoices-monthly"):
        runs = list(JobRun.objects.filter(job=name))
        assert [(r.status, r.attempts) for r in runs] == [("DONE", 1)], (name, runs)
        assert runs[0].duplicates >= 4, (name, runs[0].duplicates)

    # the digest: one email for the address (two payouts, summed to the cent), none for the customer without one
    messages = sorted(mail_dir.glob("*.log"))
    assert len(messages) == 1, [m.read_text() for m in messages]
    text = messages[0].read_text()
    assert "To: rina@example.id" in text and "IDR 1,234.57" in text
    assert list(RewardDigest.objects.values_list("email", "payouts", "total", "status")) == [("rina@example.id", 2, Decimal("1234.57"), "SENT")]

    # the settlement files: each active provider's last three UTC days, each imported exactly once
    imported = list(SettlementRun.objects.values_list("provider__code", "period_start"))
    assert len(imported) == len(set(imported)) == 15
    assert {code for code, _ in imported} == {"LSAJAH2H", "GOPAIDH2H", "JOSVOH2H", "MTRANS", "XENIT"}

    # the sweeper: one run per one-second slot, its body logged once per slot although both beats fired it
    sweeps = list(JobRun.objects.filter(job="payout-sweeper").values_list("period", "status", "duplicates"))
    assert len(sweeps) >= 8 and all(status == "DONE" for _, status, _ in sweeps)
    assert sum(duplicates for _, _, duplicates in sweeps) >= 3
    ran = re.findall(r"job payout-sweeper period (\S+): running", worker_log.read_text())
    assert sorted(ran) == sorted(period for period, _, _ in sweeps)  # no slot ran twice, none ran unrecorded
