"""The WSGI entry point (what gunicorn loads): startup objects are frozen out of the garbage
collector's sight (cezbek/wsgi.py), Celery's broker pools exist before any thread publishes, and
the application answers afterwards. A fresh process, as a web worker starts it."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import gc, io, json
from cezbek.celery import app as celery_app
built_before = celery_app._pool is not None or celery_app.amqp._producer_pool is not None
from cezbek.wsgi import application
tracked = {id(o) for o in gc.get_objects()}
statuses = []
body = b"".join(application(
    {"REQUEST_METHOD": "GET", "PATH_INFO": "/api/schema/", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80",
     "HTTP_HOST": "127.0.0.1", "wsgi.input": io.BytesIO(), "wsgi.url_scheme": "http", "SERVER_PROTOCOL": "HTTP/1.1"},
    lambda status, headers, *_: statuses.append(status),
))
print(json.dumps({"frozen": gc.get_freeze_count(), "app_tracked": id(application) in tracked,
                  "pools_built_at_import": not built_before and celery_app._pool is not None
                  and celery_app.amqp._producer_pool is not None,
                  "status": statuses[0], "body": body[:60].decode(errors="replace")}))
"""


def test_startup_objects_are_frozen_and_the_application_still_answers():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "cezbek.settings"}
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["frozen"] > 10_000  # Django, the apps and their modules
    assert seen["app_tracked"] is False  # the handler itself is among them
    assert seen["pools_built_at_import"] is True  # not left to the first publish (two threads could race)
    assert seen["status"] == "200 OK", seen
    assert seen["body"].startswith("openapi:"), seen
