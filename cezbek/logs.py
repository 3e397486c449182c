"""Log lines that follow a purchase: every record carries the request id it was logged under.

`request_id` is a context variable. `cezbek.middleware.RequestIdMiddleware` sets it for one HTTP
request; the Celery signal handlers in `cezbek/tracing.py` carry it in a task's headers and set it
(with the task's id and name) while the worker runs that task. `RequestIdFilter`, on the console
handler, copies them onto every record, so one search for a request id finds the POST and every
worker line of the payout it queued.

`CEZBEK_LOG_FORMAT` picks the console format (settings.LOGGING): `json` — one JSON object per line
(python-json-logger), the default when `DJANGO_DEBUG` is off — or `plain`, readable text, the
default in development.
"""

import contextlib
import contextvars
import logging

from pythonjsonlogger.json import JsonFormatter

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("cezbek_request_id", default=None)
# (task id, task name) while a Celery worker runs a task; set by cezbek/tracing.py.
current_task: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("cezbek_task", default=None)

FORMATS = ("json", "plain")


@contextlib.contextmanager
def task_context(*, rid: str | None, task: tuple[str, str] | None):
    """Log lines within carry this request id and task (id, name): one payout of a batch task."""
    tokens = request_id.set(rid), current_task.set(task)
    try:
        yield
    finally:
        request_id.reset(tokens[0])
        current_task.reset(tokens[1])


class RequestIdFilter(logging.Filter):
    """Adds `request_id`, `task_id` and `task_name` to every record (`missing` when there is none)."""

    def __init__(self, missing: str | None = None):
        super().__init__()
        self.missing = missing

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get() or self.missing
        task = current_task.get()
        record.task_id, record.task_name = task if task else (self.missing, self.missing)
        return True


class JsonLogFormatter(JsonFormatter):
    """One JSON object per line: timestamp (ISO 8601, UTC), level, logger, message and the extras.

    Extras are the filter's ids and whatever a caller passed with `extra=` (Django's `status_code`,
    Celery's task data, the request log's `duration_ms`, …).
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("timestamp", True)
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        super().__init__("%(levelname)s %(name)s %(message)s", **kwargs)

    def add_fields(self, log_data, record, message_dict) -> None:
        super().add_fields(log_data, record, message_dict)
        # Django's request logger passes the request object itself: its repr says nothing the
        # request log line doesn't, and may carry a customer's MSISDN from the path.
        log_data.pop("request", None)
