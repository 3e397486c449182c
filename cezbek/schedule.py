"""Every periodic job, defined once, in code, and its sync into django-celery-beat (issue 5).

`JOBS` (through `jobs()`) is the one list: a job's name, the task it runs, when (an interval, or a
crontab in Asia/Jakarta), the period it runs once per, its kwargs and what it does. Beat never runs a
job's task directly: each django-celery-beat row fires `cezbek.run_job(job=<name>)`, which runs the
job's task in the worker at most once per period however many beats fire it (`cezbek/jobs.py`).

`schedule_sync()` writes the list into django-celery-beat's tables (after every `migrate`, and with
`manage.py cezbek_schedule sync`), where staff see the jobs in the admin ("Periodic tasks"):
- Code decides which jobs exist and what they run: name, task, kwargs, description and the message
  options are rewritten by every sync; an admin edit of those lasts until the next sync.
- An operator may disable a job (`enabled` is never touched after the row is created) and change its
  timing (interval or crontab, start time, expiry). Sync keeps a timing an operator changed: it
  compares the row with the timing it wrote last (`reports.ScheduledJob.timing`). A timing still as
  sync left it follows the code, so a new default in code (or `CEZBEK_SWEEP_INTERVAL_SECONDS`) applies
  at the next sync; to hand a job back to the code's timing, set it back to the one sync wrote (sync
  reports both). An operator may slow a job down or move it, not make it run more often than once per
  period: the extra firings find the period claimed and do nothing.
- A job removed from this list loses its row at the next sync; rows sync never created (an operator's
  own, `celery.backend_cleanup`) are left alone. A job's row deleted in the admin comes back at the next
  sync: disable it instead.

This module imports nothing from Django at import time: `cezbek/settings.py` builds
`CELERY_BEAT_SCHEDULE` from it (the same jobs under the same names, for celery's file scheduler only).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from celery.schedules import crontab

TIMEZONE = "Asia/Jakarta"
RUNNER_TASK = "cezbek.run_job"
DAY, MONTH, INTERVAL = "day", "month", "interval"


@dataclass(frozen=True)
class Every:
    """Every so many seconds (a django-celery-beat IntervalSchedule)."""

    seconds: float


@dataclass(frozen=True)
class At:
    """A crontab in Asia/Jakarta (a django-celery-beat CrontabSchedule)."""

    minute: str = "0"
    hour: str = "*"
    day_of_month: str = "*"
    month_of_year: str = "*"
    day_of_week: str = "*"


@dataclass(frozen=True)
class Job:
    """One periodic job: runs `task(**kwargs)` at most once per `period` (a day, a month, or the interval)."""

    name: str
    task: str
    schedule: Every | At
    period: str
    description: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    # How long a claimed run may stay RUNNING before another firing of its period takes it over
    # (its worker died): longer than the job ever takes.
    lease_seconds: float = 2 * 3600


def jobs(*, sweep_interval: float | None = None) -> tuple[Job, ...]:
    """The periodic jobs (the sweeper's interval from `CEZBEK_SWEEP_INTERVAL_SECONDS` unless given)."""
    if sweep_interval is None:
        from django.conf import settings

        sweep_interval = float(settings.CEZBEK_SWEEP_INTERVAL_SECONDS)
    return (
        Job(
            name="payout-sweeper",
            task="wallets.payout_sweep",
            schedule=Every(sweep_interval),
            period=INTERVAL,
            lease_seconds=sweep_interval,
            description="Resumes payouts a crash or a lost message left behind (DOMAIN.md §5). "
            "Interval from CEZBEK_SWEEP_INTERVAL_SECONDS.",
        ),
        Job(
            name="batch-sweeper",
            task="cashback.batch_resume_stalled",
            schedule=Every(60),
            period=INTERVAL,
            lease_seconds=60,
            description="Resumes purchase batch uploads whose chunks stalled (DOMAIN.md §9).",
        ),
        Job(
            name="webhook-retries",
            task="partners.webhooks_retry_due",
            schedule=Every(30),
            period=INTERVAL,
            lease_seconds=30,
            description="Sends the partner webhooks whose retry is due (DOMAIN.md §6).",
        ),
        Job(
            name="email-sweeper",
            task="wallets.emails_send_stranded",
            schedule=Every(600),
            period=INTERVAL,
            lease_seconds=600,
            description="Queues the customer emails left PENDING without a message, e.g. by a broker outage (DOMAIN.md §6).",
        ),
        Job(
            name="tier-expiry",
            task="loyalty.tier_expire_due",
            schedule=At(minute="5", hour="0"),
            period=DAY,
            kwargs={"batch_size": 1000},
            description="Moves every expired loyalty tier down (DOMAIN.md §2 step 2), set-based, 1000 states per batch.",
        ),
        Job(
            name="settlement-fetch",
            task="reports.settlements_fetch",
            schedule=At(minute="0", hour="8"),
            period=DAY,
            kwargs={"days": 3},
            description="Fetches each active provider's settlement file for every UTC day of the last 3 "
            "(yesterday first due) not imported yet, and reconciles it (DOMAIN.md §7). 08:00 Jakarta is "
            "01:00 UTC: the UTC day is over.",
        ),
        Job(
            name="reward-digest",
            task="wallets.reward_digest_send",
            schedule=At(minute="30", hour="0"),
            period=DAY,
            description="Emails each customer paid yesterday (Asia/Jakarta) one summary of that day's "
            "SUCCEEDED payouts; never twice for one address and day.",
        ),
        Job(
            name="partner-invoices-monthly",
            task="reports.invoices_monthly",
            schedule=At(minute="0", hour="2", day_of_month="1"),
            period=MONTH,
            description="Invoices every partner for the previous calendar month (Asia/Jakarta) and emails "
            "them (DOMAIN.md §7).",
        ),
    )


def job_named(name: str, *, among: tuple[Job, ...] | None = None) -> Job:
    """The job called `name`; KeyError naming the known ones otherwise."""
    for job in among if among is not None else jobs():
        if job.name == name:
            return job
    known = ", ".join(j.name for j in (among if among is not None else jobs()))
    raise KeyError(f"no periodic job {name!r} (known: {known})")


def period_key(*, job: Job, now: datetime) -> str:
    """The period `now` falls in, for `job`: a date, a month, or the start of the interval, in Asia/Jakarta."""
    local = now.astimezone(ZoneInfo(TIMEZONE))
    if job.period == DAY:
        return local.date().isoformat()
    if job.period == MONTH:
        return f"{local:%Y-%m}"
    if job.period == INTERVAL:
        assert isinstance(job.schedule, Every)
        step = job.schedule.seconds
        start = math.floor(now.timestamp() / step) * step
        spec = "seconds" if float(start).is_integer() else "milliseconds"
        return datetime.fromtimestamp(start, ZoneInfo(TIMEZONE)).isoformat(timespec=spec)
    raise ValueError(f"job {job.name}: unknown period {job.period!r}")


def beat_schedule(*, sweep_interval: float) -> dict[str, dict[str, Any]]:
    """The jobs as CELERY_BEAT_SCHEDULE, for celery's own file scheduler only (`worker -B`, the end-to-end
    tests' embedded beat): the same names as the database rows, so no job is ever registered under two.

    The file scheduler calls each job's task directly, without the once-per-period claim: it is one
    embedded beat for development and tests. Production runs `celery beat` with the database scheduler,
    which ignores this dict (cezbek/jobs.py).
    """
    schedule: dict[str, dict[str, Any]] = {}
    for job in jobs(sweep_interval=sweep_interval):
        when: float | crontab
        if isinstance(job.schedule, Every):
            when = job.schedule.seconds
        else:
            s = job.schedule
            # Without a zone of its own a crontab follows CELERY_TIMEZONE, which is Asia/Jakarta.
            when = crontab(minute=s.minute, hour=s.hour, day_of_month=s.day_of_month, month_of_year=s.month_of_year, day_of_week=s.day_of_week)
        schedule[job.name] = {"task": job.task, "schedule": when, "kwargs": dict(job.kwargs)}
    return schedule


# --- sync into django-celery-beat ----------------------------------------------------------------


@dataclass
class SyncChange:
    """What `schedule_sync` did to one job's row: created, updated, unchanged or removed, and why."""

    name: str
    action: str
    timing: str = ""
    notes: list[str] = field(default_factory=list)


def _interval_fields(seconds: float) -> tuple[int, str]:
    if seconds <= 0:
        raise ValueError(f"an interval must be positive, not {seconds}")
    if float(seconds).is_integer():
        return int(seconds), "seconds"
    return round(seconds * 1_000_000), "microseconds"


def timing_of_job(job: Job) -> str:
    """The code's timing, written as `timing_of_row` writes a row's."""
    if isinstance(job.schedule, Every):
        every, period = _interval_fields(job.schedule.seconds)
        return f"every {every} {period}"
    s = job.schedule
    return f"crontab {s.minute} {s.hour} {s.day_of_month} {s.month_of_year} {s.day_of_week} {TIMEZONE}"


def timing_of_row(task) -> str:
    """A PeriodicTask's timing in one comparable string (schedule, start time and expiry)."""
    if task.interval_id:
        text = f"every {task.interval.every} {task.interval.period}"
    elif task.crontab_id:
        c = task.crontab
        zone = getattr(c.timezone, "key", str(c.timezone))
        text = f"crontab {c.minute} {c.hour} {c.day_of_month} {c.month_of_year} {c.day_of_week} {zone}"
    elif task.solar_id:
        text = f"solar {task.solar.event} {task.solar.latitude} {task.solar.longitude}"
    elif task.clocked_id:
        text = f"clocked {task.clocked.clocked_time.isoformat()}"
    else:
        text = "no schedule"
    if task.start_time:
        text += f" from {task.start_time.isoformat()}"
    if task.expires:
        text += f" until {task.expires.isoformat()}"
    return text


def _schedule_row(job: Job) -> tuple[str, Any]:
    """The IntervalSchedule or CrontabSchedule row for the job's timing (reused when one exists)."""
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule

    if isinstance(job.schedule, Every):
        every, period = _interval_fields(job.schedule.seconds)
        row = IntervalSchedule.objects.filter(every=every, period=period).order_by("id").first()
        return "interval", row or IntervalSchedule.objects.create(every=every, period=period)
    s = job.schedule
    fields = {
        "minute": s.minute,
        "hour": s.hour,
        "day_of_month": s.day_of_month,
        "month_of_year": s.month_of_year,
        "day_of_week": s.day_of_week,
        "timezone": TIMEZONE,
    }
    row = CrontabSchedule.objects.filter(**fields).order_by("id").first()
    return "crontab", row or CrontabSchedule.objects.create(**fields)


def _code_fields(job: Job) -> dict[str, Any]:
    """What the code owns on a job's row: rewritten by every sync."""
    return {
        "task": RUNNER_TASK,
        "args": "[]",
        "kwargs": json.dumps({"job": job.name}),
        "description": (
            f"{job.description}\nRuns {job.task}({json.dumps(job.kwargs) if job.kwargs else ''}) at most once "
            f"per {job.period if job.period != INTERVAL else 'interval'}. Defined in cezbek/schedule.py: "
            "you may disable it or change its timing (kept by sync); other fields are rewritten by sync."
        ),
        "one_off": False,
        "queue": None,
        "exchange": None,
        "routing_key": None,
        "priority": None,
        "headers": "{}",
    }


def schedule_sync(*, jobs_in_code: tuple[Job, ...] | None = None, using: str = "default") -> list[SyncChange]:
    """Creates or updates the django-celery-beat row of every job in code and removes the rows of jobs
    sync created that are no longer in code, in one database transaction (see the module's docstring)."""
    from django.db import transaction
    from django.utils import timezone
    from django_celery_beat.models import PeriodicTask

    from reports.models import ScheduledJob

    wanted = jobs_in_code if jobs_in_code is not None else jobs()
    names = [job.name for job in wanted]
    if len(set(names)) != len(names):
        raise ValueError(f"job names must be unique: {names}")
    now = timezone.now()
    changes: list[SyncChange] = []
    with transaction.atomic(using=using):
        records = {r.name: r for r in ScheduledJob.objects.using(using).select_for_update().order_by("name")}
        for job in wanted:
            changes.append(_sync_job(job, records.get(job.name), now=now, using=using))
        for name, record in sorted(records.items()):
            if name in names:
                continue
            task = PeriodicTask.objects.using(using).filter(pk=record.periodic_task_id).first() if record.periodic_task_id else None
            if task is not None:
                task.delete()
            record.delete()
            changes.append(SyncChange(name=name, action="removed", notes=["no longer in cezbek/schedule.py"]))
    return changes


def _sync_job(job: Job, record, *, now: datetime, using: str) -> SyncChange:
    from django_celery_beat.models import PeriodicTask

    from reports.models import ScheduledJob

    code_timing = timing_of_job(job)
    task = PeriodicTask.objects.using(using).select_for_update().filter(name=job.name).first()
    if task is None:
        kind, schedule_row = _schedule_row(job)
        task = PeriodicTask(name=job.name, enabled=True, **_code_fields(job))
        setattr(task, kind, schedule_row)
        task.save(using=using)
        change = SyncChange(name=job.name, action="created", timing=code_timing)
        if record is not None:
            change.notes.append("its row had been deleted: created again (disable a job rather than delete it)")
        written = code_timing
    else:
        change = SyncChange(name=job.name, action="unchanged")
        dirty = [name for name, value in _code_fields(job).items() if getattr(task, name) != value]
        for name in dirty:
            setattr(task, name, _code_fields(job)[name])
        current = timing_of_row(task)
        # A row sync never recorded (created by beat from CELERY_BEAT_SCHEDULE before sync existed) follows the code.
        operator_changed = record is not None and current != record.timing
        if operator_changed:
            written = record.timing
            change.timing = current
            if current != code_timing:
                change.notes.append(f"timing kept as an operator set it: {current} (code: {code_timing})")
        else:
            written = code_timing
            change.timing = code_timing
            if current != code_timing:
                kind, schedule_row = _schedule_row(job)
                for other in ("interval", "crontab", "solar", "clocked"):
                    setattr(task, other, None)
                setattr(task, kind, schedule_row)
                task.start_time = None
                task.expires = None
                dirty.append("timing")
                change.notes.append(f"timing {current} → {code_timing}")
        if dirty:
            task.save(using=using)  # django-celery-beat's signal tells running beats the schedule changed
            change.action = "updated"
            change.notes.extend(f"{name} rewritten from code" for name in dirty if name != "timing")
        if not task.enabled:
            change.notes.append("disabled by an operator: kept disabled")
    if record is None:
        ScheduledJob.objects.using(using).create(name=job.name, periodic_task=task, timing=written, synced_at=now)
    else:
        record.periodic_task = task
        record.timing = written
        record.synced_at = now
        record.save(using=using, update_fields=["periodic_task", "timing", "synced_at"])
    return change


def schedule_sync_after_migrate(sender, *, using="default", apps=None, verbosity=1, **kwargs) -> None:
    """post_migrate (reports/apps.py): a fresh `migrate` (and `make run`, and a test flush) has every job's row."""
    if apps is not None:
        try:  # a migrate to an earlier state: the tables are not there yet
            apps.get_model("reports", "ScheduledJob")
            apps.get_model("django_celery_beat", "PeriodicTask")
        except LookupError:
            return
    changes = schedule_sync(using=using)
    if verbosity >= 2:
        for change in changes:
            if change.action != "unchanged" or change.notes:
                print(f"  Periodic job {change.name}: {change.action} {'; '.join(change.notes)}".rstrip())
