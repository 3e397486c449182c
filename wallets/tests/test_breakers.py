"""The breakers' shared state in Redis: what routing and a call read and write (wallets/breakers.py)."""

import time

import pybreaker
import pytest
from django_redis import get_redis_connection

from wallets.breakers import SharedRedisStorage, breaker_for, breaker_state, breakers_open, breakers_reset
from wallets.providers import Refused, Unavailable

pytestmark = pytest.mark.redis

CODE = "JOSVOH2H"


def _key(name: str) -> str:
    return breaker_for(CODE)._state_storage._namespace(name)


def _counter() -> int:
    return int(get_redis_connection("default").get(_key("fail_counter")))


def _commands(action) -> list[str]:
    """The Redis commands `action` sends about this breaker (seen with MONITOR; other clients filtered out)."""
    redis = get_redis_connection("default")
    namespace = breaker_for(CODE)._state_storage._namespace("")
    with redis.monitor() as feed:
        action()
        redis.echo(f"end-of-action {namespace}")
        seen = []
        for event in feed.listen():
            command = event["command"]
            if command.startswith("ECHO") and namespace in command:
                break
            if namespace in command:
                seen.append(command.split()[0].upper())
    return seen


@pytest.fixture
def closed():
    breakers_reset()
    yield
    breakers_reset()


def _ok():
    return "credited"


def _down():
    raise Unavailable(CODE, "maintenance", 503)


def _refused():
    raise Refused(CODE, "account blocked", 422)


def test_storage_is_the_shared_redis_one(closed):
    assert isinstance(breaker_for(CODE)._state_storage, SharedRedisStorage)


def test_a_healthy_call_after_routing_reads_the_state_and_writes_nothing(closed):
    assert breakers_open([CODE]) == set()
    commands = _commands(lambda: breaker_for(CODE).call(_ok))
    assert commands == ["GET"]  # the state, right before the call; the zero counter came with the MGET
    assert _counter() == 0


def test_without_routing_first_pybreaker_reads_and_writes_redis_as_usual(closed):
    commands = _commands(lambda: breaker_for(CODE).call(_ok))
    assert "GET" in commands and "SET" in commands


def test_a_failure_counted_elsewhere_is_reset_by_the_next_success_after_routing(closed):
    get_redis_connection("default").set(_key("fail_counter"), 3)
    assert breakers_open([CODE]) == set()
    breaker_for(CODE).call(_ok)
    assert _counter() == 0


def test_a_failure_counted_during_our_call_survives_it_until_the_next_routing(closed):
    assert breakers_open([CODE]) == set()

    def another_process_fails_meanwhile():
        get_redis_connection("default").incr(_key("fail_counter"))
        return "credited"

    breaker_for(CODE).call(another_process_fails_meanwhile)
    assert _counter() == 1  # the documented price of skipping the write
    breakers_open([CODE])
    breaker_for(CODE).call(_ok)
    assert _counter() == 0


def test_failures_are_counted_in_redis_at_once_and_open_the_breaker_for_every_process(closed, settings):
    settings.CEZBEK_BREAKER_FAIL_MAX = 2
    breaker = breaker_for(CODE)
    breaker._fail_max = 2
    for _ in range(2):
        breakers_open([CODE])
        with pytest.raises(Unavailable):
            breaker.call(_down)
    assert get_redis_connection("default").get(_key("state")) == pybreaker.STATE_OPEN.encode()
    assert breaker_state(CODE) == "open"
    assert breakers_open([CODE]) == {CODE}


def test_an_account_refusal_does_not_count_against_the_provider(closed):
    breakers_open([CODE])
    with pytest.raises(Refused):
        breaker_for(CODE).call(_refused)
    assert _counter() == 0
    assert breaker_state(CODE) == "closed"


def test_a_breaker_opened_after_routing_stops_the_send(closed):
    assert breakers_open([CODE]) == set()
    get_redis_connection("default").set(_key("state"), pybreaker.STATE_OPEN)  # another process opens it
    get_redis_connection("default").set(_key("opened_at"), int(time.time()))
    sent = []
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker_for(CODE).call(lambda: sent.append(1))
    assert sent == []


def test_an_old_priming_is_not_trusted(closed, monkeypatch):
    from wallets import breakers

    breakers_open([CODE])
    get_redis_connection("default").set(_key("fail_counter"), 2)
    monkeypatch.setattr(breakers, "PRIMED_SECONDS", 0.0)
    breaker_for(CODE).call(_ok)
    assert _counter() == 0
