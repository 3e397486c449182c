"""Configuration every purchase reads (wallets, tiers, rewards, rules, partner keys), cached per process.

Configuration changes rarely and is read on every request, where the ORM would compile the same
queries again and again. Each process keeps what it loaded until the configuration changes:
a write in this process drops the copy at once; other processes notice a shared version
in the cache every process shares (settings.SHARED_CACHE: Redis, or without it files under the
var directory) within CEZBEK_CONFIG_CACHE_SECONDS. Each publication is a new random token, not an
increment, which the file cache does as a read and a write.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.core.cache import caches
from django.core.signals import setting_changed
from django.db import transaction
from django.dispatch import receiver

T = TypeVar("T")
VERSION_KEY = "config-version"

_lock = threading.Lock()
_values: dict[str, object] = {}
_generation = 0  # bumped on every drop, so a load that raced with a change is not kept
_shared_version = None
_checked_at = 0.0
# CEZBEK_CONFIG_CACHE_SECONDS, read once: a purchase asks several times, and each read of a
# setting goes through LazySettings' Python-level __getattribute__.
_check_every: float | None = None


def _drop() -> None:
    global _generation
    with _lock:
        _values.clear()
        _generation += 1


class NotShared(Exception):
    """The cache every process shares (settings.SHARED_CACHE) did not answer."""


def _publish() -> None:
    try:
        _shared().set(VERSION_KEY, uuid.uuid4().hex, timeout=None)
    except Exception as error:
        _drop()
        raise NotShared(
            f"the change is saved, but the other processes could not be told ({_reason(error)}): "
            "restart them to make them read it"
        ) from error
    _drop()


def config_changed(**_) -> None:
    """Call after any configuration write (signal receivers do, for model saves and deletes).

    Inside the write's transaction, the shared cache is asked first: when it does not answer, a
    change the other processes would never hear of is refused (NotShared) and rolled back.
    """
    try:
        _shared().get(VERSION_KEY)
    except Exception as error:
        raise NotShared(f"the cache every process shares did not answer ({_reason(error)}): nothing changed") from error
    _drop()  # this process, at once (even inside an uncommitted transaction)
    transaction.on_commit(_publish)  # every process, once the change is visible


def _shared():
    """The cache every process shares: Redis, or without it files under the var directory."""
    return caches[settings.SHARED_CACHE]


def _reason(error: Exception) -> str:
    return f"{type(error).__name__}: {error}".splitlines()[0]


def reset() -> None:
    """Forget everything (tests)."""
    global _shared_version, _checked_at, _check_every
    _drop()
    _shared_version, _checked_at, _check_every = None, 0.0, None


@receiver(setting_changed)
def _setting_changed(*, setting: str, **_) -> None:
    global _check_every
    if setting == "CEZBEK_CONFIG_CACHE_SECONDS":
        _check_every = None


def cached(name: str, load: Callable[[], T]) -> T:
    """The process's copy of `name`, loaded by `load()` when missing or outdated. None is never kept."""
    global _shared_version, _checked_at, _check_every
    if _check_every is None:
        _check_every = settings.CEZBEK_CONFIG_CACHE_SECONDS
    now = time.monotonic()
    if now - _checked_at >= _check_every:
        version = _shared().get(VERSION_KEY)
        if version != _shared_version:
            _drop()
            _shared_version = version
        _checked_at = now
    try:
        return _values[name]  # type: ignore[return-value]
    except KeyError:
        pass
    generation = _generation
    value = load()
    if value is not None:
        with _lock:
            if generation == _generation:
                _values[name] = value
    return value
