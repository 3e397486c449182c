"""The web process (gunicorn with gunicorn.conf.py) without Redis, as `make run` starts it.

The replay guard and the rate limit are in process memory then, so they must see every request,
whichever worker would have served it: WEB_CONCURRENCY asks for three workers here, and with three
processes a replay served by another worker than the original passed (found in `make run`).
The configuration's version is in files every process reads: a key revoked from the command line,
another process, must stop working in the web process (before, it kept working until a restart).
"""

import itertools
import os
import subprocess
import sys
import time

import pytest
import requests
from django.db import connection

from cezbek.testing.web import ROOT, gunicorn_running
from partners.signing import signed_headers

PATH = "/api/v1/cashbacks"


@pytest.fixture
def web_without_redis(tmp_path):
    """gunicorn with the project's config, WEB_CONCURRENCY=3 and no REDIS_URL; yields (base URL,
    its log, its environment)."""
    db = connection.settings_dict
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("REDIS_URL", "CELERY_BROKER_URL", "PROMETHEUS_MULTIPROC_DIR", "CEZBEK_PROMETHEUS_DIR_TEMPORARY")
    }
    env.update(
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        WEB_CONCURRENCY="3",
        CEZBEK_VAR_DIR=str(tmp_path / "var"),
        CEZBEK_CONFIG_CACHE_SECONDS="1",
    )
    log_path = tmp_path / "gunicorn.log"
    with gunicorn_running(env=env, log_path=log_path) as (base, _):
        yield base, log_path, env


def signed_get(base: str, credential, timestamp: int) -> requests.Response:
    headers = signed_headers(key_id=credential.key_id, secret=credential.secret, method="GET", path=PATH, body=b"", timestamp=timestamp)
    # A new connection for each request, as separate partner calls would come.
    return requests.get(f"{base}{PATH}", headers={**headers, "Connection": "close"}, timeout=10)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_without_redis_every_replay_is_refused_by_the_web_process(make_partner, web_without_redis):
    base, log_path, _ = web_without_redis
    _, credential = make_partner("LAJADA")
    now = int(time.time())

    firsts, replays = [], []
    for n in range(30):  # thirty signatures (distinct timestamps), each sent twice
        firsts.append(signed_get(base, credential, now - n))
        replays.append(signed_get(base, credential, now - n))

    assert [r.status_code for r in firsts] == [200] * 30
    assert [r.status_code for r in replays] == [401] * 30
    assert {r.json()["error"]["code"] for r in replays} == {"replayed_request"}
    # one process holds the guard, and the log says why the three workers asked for became threads
    assert "REDIS_URL is unset: one worker with 3 threads instead of 3 workers" in log_path.read_text()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_without_redis_the_rate_limit_counts_every_request_of_the_web_process(make_partner, web_without_redis):
    base, _, _ = web_without_redis
    _, credential = make_partner("LAJADA", rate_limit_per_minute=5)
    if time.time() % 60 > 50:  # twelve requests within one minute's window, not across two
        time.sleep(61 - time.time() % 60)
    now = int(time.time())

    statuses = [signed_get(base, credential, now - n).status_code for n in range(12)]

    assert statuses == [200] * 5 + [429] * 7


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_without_redis_a_key_revoked_by_another_process_stops_working(make_partner, web_without_redis):
    base, _, env = web_without_redis
    _, credential = make_partner("LAJADA")
    timestamps = itertools.count(int(time.time()), -1)  # a new signature for every request
    assert signed_get(base, credential, next(timestamps)).status_code == 200  # the web process has the key in its copy

    # when an operator revokes it from the command line (another process)
    revoke = subprocess.run(
        [sys.executable, "manage.py", "partner_credentials", "LAJADA", "--revoke", credential.key_id],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert revoke.returncode == 0, revoke.stderr
    revoked_at = time.monotonic()

    # then within CEZBEK_CONFIG_CACHE_SECONDS (1 s here) and a margin, the web process refuses it
    while (response := signed_get(base, credential, next(timestamps))).status_code == 200:
        assert time.monotonic() - revoked_at < 10, "the revoked key still works in the web process"
        time.sleep(0.2)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"
