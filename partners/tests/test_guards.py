"""The replay guard's and rate limit's Redis round trip (partners.guards.redis_round_trip)."""

import os
import socket
import subprocess
import sys
import threading
import time

import pytest
import redis
from django.conf import settings
from django.core.cache import cache
from django_redis import get_redis_connection

from partners import guards
from partners.guards import redis_round_trip, request_admit

pytestmark = pytest.mark.redis


def _admit(signature):
    return request_admit(signature=signature, partner_id=7, limit_per_minute=2, replay_ttl=601)


def test_admission_claims_each_signature_once_and_counts_the_minute(monkeypatch):
    # the limiter's clock stands 20 s into a minute, so the window cannot roll over mid-test
    fixed = (int(time.time()) // 60) * 60 + 20
    monkeypatch.setattr("partners.guards.time.time", lambda: fixed)
    first, replay, second, third = _admit("sig-a"), _admit("sig-a"), _admit("sig-b"), _admit("sig-c")
    assert (first.fresh, first.allowed) == (True, True)
    assert replay.fresh is False
    assert (second.fresh, second.allowed) == (True, False)  # the replay counted too: 3 > 2
    assert (third.fresh, third.allowed) == (True, False)
    assert first.retry_after == 40
    [key] = get_redis_connection("default").keys(cache.make_key("ratelimit:7:*"))
    assert 0 < get_redis_connection("default").ttl(key) <= 61


def test_replies_come_back_in_order():
    key = cache.make_key("guards-order")
    assert redis_round_trip(("SET", key, "x"), ("GET", key), ("DEL", key), ("GET", key)) == [b"OK", b"x", 1, None]


def test_a_connection_closed_by_the_server_is_replaced_before_use():
    redis_round_trip(("PING",))
    killed = get_redis_connection("default").client_kill_filter(_id=redis_round_trip(("CLIENT", "ID"))[0])
    assert killed == 1
    assert redis_round_trip(("PING",)) == [b"PONG"]


def test_a_failed_round_trip_drops_the_connection_and_propagates():
    redis_round_trip(("PING",))
    connection = guards._line.connection
    with pytest.raises(redis.ResponseError):
        redis_round_trip(("NO-SUCH-COMMAND",), ("PING",))
    assert not connection.is_connected  # the PING's reply was never read: not reused out of step
    assert redis_round_trip(("PING",)) == [b"PONG"]


def test_unreachable_redis_raises_a_connection_error(monkeypatch):
    redis_round_trip(("PING",))
    monkeypatch.setattr(guards._line, "pid", None)  # the next use builds its connection afresh…
    pool = get_redis_connection("default").connection_pool
    monkeypatch.setitem(pool.connection_kwargs, "port", 1)  # …towards a port nobody listens on
    with pytest.raises(redis.ConnectionError):
        redis_round_trip(("PING",))
    monkeypatch.undo()
    guards._line.pid = None
    assert redis_round_trip(("PING",)) == [b"PONG"]


def test_the_connection_carries_the_settings_timeouts():
    redis_round_trip(("PING",))
    options = settings.CACHES["default"]["OPTIONS"]
    assert (options["SOCKET_CONNECT_TIMEOUT"], options["SOCKET_TIMEOUT"]) == (settings.REDIS_CONNECT_TIMEOUT, settings.REDIS_SOCKET_TIMEOUT)
    assert (guards._line.connection.socket_connect_timeout, guards._line.connection.socket_timeout) == (
        settings.REDIS_CONNECT_TIMEOUT, settings.REDIS_SOCKET_TIMEOUT)


def test_the_timeouts_default_to_2_and_5_seconds_and_refuse_zero():
    def settings_read(**env):
        environ = {k: v for k, v in os.environ.items() if k not in ("REDIS_CONNECT_TIMEOUT", "REDIS_SOCKET_TIMEOUT")}
        return subprocess.run(
            [sys.executable, "-c", "import cezbek.settings as s; print(s.REDIS_CONNECT_TIMEOUT, s.REDIS_SOCKET_TIMEOUT)"],
            env={**environ, **env}, capture_output=True, text=True, cwd=settings.BASE_DIR,
        )

    defaults = settings_read()
    assert defaults.stdout.split() == ["2.0", "5.0"], defaults.stderr  # README's defaults
    refused = settings_read(REDIS_SOCKET_TIMEOUT="0")  # django-redis would read 0 as "wait forever"
    assert refused.returncode != 0 and "REDIS_SOCKET_TIMEOUT='0': must be more than 0" in refused.stderr


def test_a_redis_that_stops_answering_fails_the_round_trip_within_its_timeout(monkeypatch):
    # A server that accepts connections and never answers (a hung Redis).
    listener = socket.create_server(("127.0.0.1", 0))
    held = []
    threading.Thread(target=lambda: held.append(listener.accept()), daemon=True).start()
    try:
        monkeypatch.setattr(guards._line, "pid", None, raising=False)
        pool = get_redis_connection("default").connection_pool
        monkeypatch.setitem(pool.connection_kwargs, "port", listener.getsockname()[1])
        monkeypatch.setitem(pool.connection_kwargs, "socket_timeout", 0.5)  # the setting, shortened for the test
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            redis_round_trip(("PING",))
        assert time.monotonic() - started < 3
        assert held and not guards._line.connection.is_connected  # it got through, then gave up and dropped it
    finally:
        monkeypatch.undo()
        guards._line.pid = None  # the next use connects afresh, to the real Redis
        listener.close()
    assert redis_round_trip(("PING",)) == [b"PONG"]


def test_each_thread_has_its_own_connection():
    ids = []

    def client_id():
        ids.append(redis_round_trip(("CLIENT", "ID"))[0])

    threads = [threading.Thread(target=client_id) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client_id()
    assert len(set(ids)) == 4


@pytest.mark.django_db
def test_a_purchase_while_redis_is_unreachable_fails_whole_and_its_retry_goes_through(api, wallets, ladder, global_rule, monkeypatch):
    from cashback.models import Transaction
    from wallets.models import Payout

    body = {"partner_ref": "R-1", "msisdn": "628118770510", "quantity": 1, "amount": "1000.00", "wallet": "LSAJA"}
    monkeypatch.setattr(guards._line, "pid", None, raising=False)
    monkeypatch.setitem(get_redis_connection("default").connection_pool.connection_kwargs, "port", 1)
    api.client.raise_request_exception = False
    refused = api.post("/api/v1/cashbacks", body)
    # refused by the guard's round trip itself: its connection was made towards the dead port
    assert guards._line.connection.port == 1 and not guards._line.connection.is_connected
    assert refused.status_code == 500
    assert refused.json()["error"]["code"] == "server_error"
    assert (Transaction.objects.count(), Payout.objects.count()) == (0, 0)
    monkeypatch.undo()
    guards._line.pid = None
    retried = api.post("/api/v1/cashbacks", body)  # signed again: a new timestamp, a new signature
    assert retried.status_code == 201, retried.content
    assert (Transaction.objects.count(), Payout.objects.count()) == (1, 1)
