import os

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cezbek.settings")

app = Celery("cezbek")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Celery's Django fixup closes every database connection before and after every task unless this
# is set, whatever CONN_MAX_AGE says: each payout would open a new PostgreSQL session (about 11 ms
# of server CPU, the naive worker's ~3.5× cost). We turn that off and instead, like Django around
# each request, close only connections that are broken or past CONN_MAX_AGE (below).
app.conf.update(CELERY_DB_REUSE_MAX=2**62)
app.autodiscover_tasks()

from cezbek import tracing  # noqa: E402,F401  (connects the request-id and logging signal handlers)


@task_prerun.connect
@task_postrun.connect
def _close_old_connections(**_) -> None:
    from django.db import close_old_connections

    close_old_connections()
