"""The replay guard and the rate limit through the real web process (gunicorn, gunicorn.conf.py)
without Redis, as `make run` starts it: they live in process memory then, so they must see every
request, whichever worker would have served it. WEB_CONCURRENCY asks for three workers here; with
three processes, a replay served by another worker than the original passed (found in `make run`)."""

import os
import time

import pytest
import requests
from django.db import connection

from cezbek.testing.web import gunicorn_running
from partners.signing import signed_headers

PATH = "/api/v1/cashbacks"


@pytest.fixture
def web_without_redis(tmp_path):
    """gunicorn with the project's config, WEB_CONCURRENCY=3 and no REDIS_URL; yields (base URL, log)."""
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
    )
    log_path = tmp_path / "gunicorn.log"
    with gunicorn_running(env=env, log_path=log_path) as (base, _):
        yield base, log_path


def signed_get(base: str, credential, timestamp: int) -> requests.Response:
    headers = signed_headers(key_id=credential.key_id, secret=credential.secret, method="GET", path=PATH, body=b"", timestamp=timestamp)
    # A new connection for each request, as separate partner calls would come.
    return requests.get(f"{base}{PATH}", headers={**headers, "Connection": "close"}, timeout=10)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_without_redis_every_replay_is_refused_by_the_web_process(make_partner, web_without_redis):
    base, log_path = web_without_redis
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
    base, _ = web_without_redis
    _, credential = make_partner("LAJADA", rate_limit_per_minute=5)
    if time.time() % 60 > 50:  # twelve requests within one minute's window, not across two
        time.sleep(61 - time.time() % 60)
    now = int(time.time())

    statuses = [signed_get(base, credential, now - n).status_code for n in range(12)]

    assert statuses == [200] * 5 + [429] * 7
