"""`cezbek_schedule sync|list [--json]`: the periodic jobs of cezbek/schedule.py and their beat rows."""

import json

from django.core.management.base import BaseCommand
from django.utils import timezone

from cezbek.schedule import jobs, schedule_sync, timing_of_job, timing_of_row


class Command(BaseCommand):
    help = (
        "sync: writes every periodic job of cezbek/schedule.py into django-celery-beat's tables (also done after "
        "every migrate), keeping a job an operator disabled and a timing an operator changed, and removing the rows "
        "of jobs no longer in code. list: each job, its timing in code and in the database, whether it is enabled, "
        "and its last run."
    )

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["sync", "list"], help="sync the database with the code, or list the jobs")
        parser.add_argument("--json", action="store_true", dest="as_json", help="print JSON on stdout")

    def handle(self, *args, action, as_json, **options):
        if action == "sync":
            changes = schedule_sync()
            if as_json:
                self.stdout.write(json.dumps({"changes": [vars(c) for c in changes]}))
                return
            for change in changes:
                notes = f" ({'; '.join(change.notes)})" if change.notes else ""
                self.stdout.write(f"{change.name:<26} {change.action:<9} {change.timing}{notes}")
            return
        rows = _listing()
        if as_json:
            self.stdout.write(json.dumps({"jobs": rows}))
            return
        for row in rows:
            state = "enabled" if row["enabled"] else ("DISABLED" if row["enabled"] is not None else "NOT SYNCED")
            last = row["last_run"]
            last_text = f"last {last['period']} {last['status']}" if last else "never run"
            timing = row["timing"] if row["timing"] == row["code_timing"] else f"{row['timing']} (code: {row['code_timing']})"
            self.stdout.write(f"{row['name']:<26} {state:<10} {row['task']:<30} {timing or row['code_timing']}; {last_text}")


def _listing() -> list[dict]:
    from django_celery_beat.models import PeriodicTask

    from reports.models import JobRun

    out = []
    for job in jobs():
        task = PeriodicTask.objects.select_related("interval", "crontab", "solar", "clocked").filter(name=job.name).first()
        run = JobRun.objects.filter(job=job.name).order_by("-started_at", "-id").first()
        out.append(
            {
                "name": job.name,
                "task": job.task,
                "period": job.period,
                "kwargs": job.kwargs,
                "code_timing": timing_of_job(job),
                "timing": timing_of_row(task) if task else None,
                "enabled": task.enabled if task else None,
                "last_fired_at": timezone.localtime(task.last_run_at).isoformat() if task and task.last_run_at else None,
                "last_run": (
                    {
                        "period": run.period,
                        "status": run.status,
                        "started_at": timezone.localtime(run.started_at).isoformat(),
                        "finished_at": timezone.localtime(run.finished_at).isoformat() if run.finished_at else None,
                        "duplicates": run.duplicates,
                        "error": run.error,
                    }
                    if run
                    else None
                ),
            }
        )
    return out
