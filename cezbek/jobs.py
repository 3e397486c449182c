"""Periodic jobs run at most once per period, however many beats fire them (issue 5).

Beat fires `cezbek.run_job(job=<name>)` (cezbek/schedule.py); the worker that gets it claims the job's
period by inserting a `reports.JobRun` row, unique on (job, period), in its own committed transaction,
and only then runs the job's task in-process. A second firing of the same period — a second beat
started by mistake, a redelivered message, an admin "Run selected tasks" — loses the insert, counts
itself in `duplicates` and does nothing. So two beats never double a side effect, whatever the task.

- The period is the job's, from code: the day or the month in Asia/Jakarta, or the interval's slot
  (`schedule.period_key`), taken when the worker runs the firing.
- A run that raised is FAILED and its period may be claimed again by a later firing of that period
  (the next firing of an interval job, "Run selected tasks" in the admin for a daily one): the jobs
  are idempotent per period, so a retry finishes what the failed run left.
- A run whose worker died stays RUNNING; another firing of the period takes it over once the job's
  lease has passed (longer than the job ever takes).
- The database, not Redis `SET NX`: it is the same on the embedded setup (SQLite, no Redis), survives
  a Redis flush, and the rows are the audit of what ran when, where, with what result. Rows of
  interval jobs are deleted after `CEZBEK_JOB_RUNS_KEEP_DAYS`; daily and monthly ones are kept.

`DatabaseScheduler` is the beat scheduler (`CELERY_BEAT_SCHEDULER`): django-celery-beat's, reading
only the rows `schedule_sync` wrote.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from celery import current_app, shared_task
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django_celery_beat.schedulers import DatabaseScheduler as _DatabaseScheduler

from cezbek.schedule import INTERVAL, Job, job_named, period_key
from reports.models import JobRun

logger = logging.getLogger("cezbek.jobs")

R = JobRun.Status


class DatabaseScheduler(_DatabaseScheduler):
    """django-celery-beat's DatabaseScheduler without its start-up writes.

    At start the stock scheduler writes CELERY_BEAT_SCHEDULE into the table (overwriting the timing
    an operator set in the admin) and adds `celery.backend_cleanup` (we keep no task results). Here
    the table is written only by `schedule_sync` (after `migrate`, or `cezbek_schedule sync`), and
    CELERY_BEAT_SCHEDULE serves only celery's file scheduler.
    """

    def setup_schedule(self) -> None:
        pass


def runner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:200]


def job_run_once(*, job: Job, body: Callable[[], Any], now: datetime | None = None) -> dict[str, Any]:
    """Runs `body` if this firing claims the job's current period; else counts the firing and does nothing.

    Returns `{"job", "period", "ran", "result"}`. Raises what `body` raised, after recording the run FAILED.
    """
    now = now or timezone.now()
    period = period_key(job=job, now=now)
    run = job_claim(job=job, period=period, now=now)
    if run is None:
        logger.info("job %s period %s: already claimed, skipped", job.name, period, extra={"job": job.name, "period": period})
        return {"job": job.name, "period": period, "ran": False, "result": None}
    logger.info("job %s period %s: running (attempt %s)", job.name, period, run.attempts, extra={"job": job.name, "period": period})
    try:
        result = body()
    except BaseException as error:
        _finish(run, status=R.FAILED, error=f"{type(error).__name__}: {error}"[:2000])
        logger.error("job %s period %s: failed: %s", job.name, period, error, extra={"job": job.name, "period": period})
        raise
    result = json.loads(json.dumps(result, default=str))  # what a JSONField can hold (Decimals, dates as text)
    _finish(run, status=R.DONE, result=result)
    logger.info("job %s period %s: done %s", job.name, period, result, extra={"job": job.name, "period": period})
    if job.period == INTERVAL:
        keep = timedelta(days=settings.CEZBEK_JOB_RUNS_KEEP_DAYS)
        JobRun.objects.filter(job=job.name, started_at__lt=now - keep).delete()
    return {"job": job.name, "period": period, "ran": True, "result": result}


def job_claim(*, job: Job, period: str, now: datetime) -> JobRun | None:
    """Claims (job, period) for this worker: a new row, a FAILED one, or a RUNNING one past its lease.

    None when the period is taken (running within its lease, or done): that firing is then counted.
    """
    runner = runner_name()
    try:
        with transaction.atomic():
            return JobRun.objects.create(job=job.name, period=period, status=R.RUNNING, started_at=now, runner=runner)
    except IntegrityError:
        pass
    # The WHERE is evaluated again on the locked row, so of two concurrent retries one gets 1 row.
    stale = now - timedelta(seconds=job.lease_seconds)
    taken = (
        JobRun.objects.filter(job=job.name, period=period)
        .filter(Q(status=R.FAILED) | Q(status=R.RUNNING, started_at__lt=stale))
        .update(status=R.RUNNING, started_at=now, finished_at=None, attempts=F("attempts") + 1, runner=runner, error="")
    )
    if taken:
        return JobRun.objects.get(job=job.name, period=period)
    JobRun.objects.filter(job=job.name, period=period).update(duplicates=F("duplicates") + 1)
    return None


def _finish(run: JobRun, *, status: str, result: Any = None, error: str = "") -> None:
    # Only while the claim is still this run's: a run taken over after its lease writes nothing.
    JobRun.objects.filter(pk=run.pk, attempts=run.attempts, status=R.RUNNING).update(
        status=status, finished_at=timezone.now(), result=result, error=error
    )


def job_execute(*, job: Job, now: datetime | None = None) -> dict[str, Any]:
    """Runs the job's task in this process, once per period (see the module's docstring)."""
    task = current_app.tasks.get(job.task)
    if task is None:
        # Not deployed yet (another app's task): no claim, so the period runs once it is.
        logger.warning("job %s: task %s is not registered in this worker; nothing run", job.name, job.task)
        return {"job": job.name, "period": None, "ran": False, "result": None, "skipped": f"task {job.task} not registered"}
    return job_run_once(job=job, body=lambda: task(**job.kwargs), now=now)


@shared_task(name="cezbek.run_job")
def run_job(job: str) -> dict[str, Any]:
    """What beat fires for every periodic job: the job's task, at most once per period."""
    try:
        definition = job_named(job)
    except KeyError as error:
        # A row left by an older release (sync removes it) or typed in the admin: nothing to run.
        logger.error("%s", error.args[0])
        return {"job": job, "period": None, "ran": False, "result": None, "skipped": "unknown job"}
    return job_execute(job=definition)
