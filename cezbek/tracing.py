"""The request id follows a purchase into its Celery tasks (connected from cezbek/celery.py).

- `before_task_publish`: a task queued while a request id is set (inside a request, or inside a
  task that itself carries one — a retry, an inquiry) carries it in the message header
  `cezbek_request_id`.
- `task_prerun` / `task_postrun`: while a worker runs the task, the id (and the task's id and
  name) are set in `cezbek.logs`'s context variables, so every line the task logs carries them.
  A task queued without one (beat's sweeper) logs `request_id: null` and its own task id.
- `setup_logging`: the worker and beat log through settings.LOGGING — the same formats, filter and
  `CEZBEK_LOG_FORMAT` as the web process — instead of Celery's own handlers; the level is the
  `-l/--loglevel` given to Celery (the Procfile says `info`).
"""

import logging
import logging.config

from celery.signals import before_task_publish, setup_logging, task_postrun, task_prerun

from cezbek import logs

HEADER = "cezbek_request_id"

# Context tokens of the tasks running in this process, by task id, for task_postrun to reset.
_tokens: dict[str, tuple] = {}


@before_task_publish.connect
def request_id_to_headers(headers=None, **_) -> None:
    rid = logs.request_id.get()
    if rid and headers is not None:
        headers.setdefault(HEADER, rid)


@task_prerun.connect
def request_id_from_headers(task_id=None, task=None, **_) -> None:
    # An eager task (CELERY_TASK_ALWAYS_EAGER) has no headers: it runs inside the request, whose id stands.
    rid = getattr(task.request, HEADER, None) or logs.request_id.get()
    _tokens[task_id] = (logs.request_id.set(rid), logs.current_task.set((task_id, task.name)))


@task_postrun.connect
def request_id_forget(task_id=None, **_) -> None:
    tokens = _tokens.pop(task_id, None)
    if tokens:
        logs.request_id.reset(tokens[0])
        logs.current_task.reset(tokens[1])


@setup_logging.connect
def logging_from_settings(loglevel=None, **_) -> None:
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
    if loglevel:
        logging.getLogger().setLevel(loglevel)
