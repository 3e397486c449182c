"""Probes (API.md, operations endpoints): /healthz says the process is up, /readyz checks the real
database, cache and broker; both open to anyone, never rate-limited, outside the partner schema."""

import json
import socket

import pytest
from django.conf import settings
from django.core.cache import caches

from cezbek.middleware import SANE_REQUEST_ID


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_healthz_answers_without_touching_any_backend(client):
    # no `db` fixture: any database query here would fail the test (pytest-django blocks it)
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-store" in response["Cache-Control"]


@pytest.mark.django_db
def test_readyz_checks_the_real_database_cache_and_broker(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok" and "failed" not in body
    assert set(body["checks"]) == {"database", "cache", "broker"}
    for check in body["checks"].values():
        assert check["status"] == "ok"
        assert 0 <= check["latency_ms"] < 2000


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db
def test_readyz_runs_against_postgresql_and_redis_in_this_run(client):
    from django.db import connection

    assert connection.vendor == "postgresql"
    assert settings.CELERY_BROKER_URL.startswith("redis://")
    assert type(caches["default"]).__module__.startswith("django_redis")
    assert client.get("/readyz").status_code == 200


@pytest.mark.django_db
def test_readyz_is_503_naming_the_broker_when_the_broker_port_is_closed(client, settings, caplog):
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{closed_port()}/0"
    settings.CEZBEK_READYZ_TIMEOUT = 1.0
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["failed"] == ["broker"]
    assert body["checks"]["broker"]["status"] == "failed"
    assert body["checks"]["broker"]["error"] == "ConnectionError"
    assert body["checks"]["broker"]["latency_ms"] < 1500  # one attempt, no retry loop
    assert (body["checks"]["database"]["status"], body["checks"]["cache"]["status"]) == ("ok", "ok")
    # the detail (host and port) is in the log, not in the public answer
    assert "127.0.0.1" not in response.content.decode()
    assert any("broker check failed" in r.getMessage() and "Connection refused" in r.getMessage() for r in caplog.records)


@pytest.mark.django_db
def test_readyz_is_503_naming_the_cache_when_redis_is_unreachable(client, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{closed_port()}/0",
            "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient", "SOCKET_CONNECT_TIMEOUT": 1},
        }
    }
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failed"] == ["cache"]


@pytest.mark.django_db
@pytest.mark.redis
def test_readyz_gives_up_on_a_redis_that_stops_answering_within_its_own_timeout(client, settings):
    # A server that accepts connections and never answers: the check fails after
    # CEZBEK_READYZ_TIMEOUT, not after the cache's own socket timeout (5 s).
    import threading
    import time

    listener = socket.create_server(("127.0.0.1", 0))
    held = []
    threading.Thread(target=lambda: held.append(listener.accept()), daemon=True).start()
    try:
        settings.CEZBEK_READYZ_TIMEOUT = 0.5
        settings.CACHES = {
            "default": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": f"redis://127.0.0.1:{listener.getsockname()[1]}/0",
                "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient", "SOCKET_CONNECT_TIMEOUT": 5, "SOCKET_TIMEOUT": 5},
            }
        }
        started = time.monotonic()
        response = client.get("/readyz")
        assert time.monotonic() - started < 3
        assert held  # it did connect: the time went on waiting for a reply
        assert response.status_code == 503
        assert response.json()["failed"] == ["cache"] and response.json()["checks"]["cache"]["error"] == "TimeoutError"
    finally:
        listener.close()


def test_probes_need_no_signature_and_are_never_rate_limited(client, db, settings):
    settings.CEZBEK_RATE_LIMIT_PER_MINUTE = 1
    for _ in range(5):
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        assert client.get("/metrics").status_code == 200
    # while the partner API, unsigned, is refused
    assert client.get("/api/v1/cashbacks").status_code == 401


def test_probes_answer_get_and_head_only(client, db):
    assert client.head("/healthz").status_code == 200
    assert client.post("/healthz").status_code == 405
    assert client.post("/readyz").status_code == 405
    assert client.delete("/metrics").status_code == 405


def test_operations_endpoints_are_not_in_the_partner_schema(client, db):
    schema = json.loads(client.get("/api/schema/?format=json").content)
    paths = " ".join(schema["paths"])
    for name in ("healthz", "readyz", "metrics"):
        assert name not in paths


def test_an_incoming_sane_request_id_is_honoured_and_returned(client):
    response = client.get("/healthz", headers={"X-Request-ID": "lb-7f3a:0001"})
    assert response["X-Request-ID"] == "lb-7f3a:0001"


@pytest.mark.parametrize("incoming", ["", "has space", "new\nline", "x" * 129, "-leading-dash", "quote\"d", "é"])
def test_an_insane_request_id_is_replaced_by_a_new_one(client, incoming):
    response = client.get("/healthz", headers={"X-Request-ID": incoming} if incoming else {})
    generated = response["X-Request-ID"]
    assert generated != incoming
    assert len(generated) == 32 and int(generated, 16) >= 0
    assert SANE_REQUEST_ID.fullmatch(generated)
    assert client.get("/healthz")["X-Request-ID"] != generated  # a new one each time
