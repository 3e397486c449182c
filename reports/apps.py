from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ReportsConfig(AppConfig):
    name = "reports"

    def ready(self) -> None:
        from cezbek import jobs  # noqa: F401  (registers cezbek.run_job, what beat fires for every periodic job)
        from cezbek.schedule import schedule_sync_after_migrate

        # After every migrate (and test flush): django-celery-beat holds every job of cezbek/schedule.py.
        post_migrate.connect(schedule_sync_after_migrate, sender=self, dispatch_uid="reports-schedule-sync")
