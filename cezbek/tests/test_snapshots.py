"""cezbek.snapshots: each process's copy of the configuration, and how it learns of changes."""

import uuid

from django.conf import settings as django_settings
from django.core.cache import caches

from cezbek import snapshots


def _another_process_publishes() -> None:
    """What `snapshots._publish` does in another process after a configuration write there."""
    caches[django_settings.SHARED_CACHE].set(snapshots.VERSION_KEY, uuid.uuid4().hex, timeout=None)


def test_a_change_elsewhere_is_seen_once_the_check_interval_has_passed(settings):
    loads = []

    def load():
        loads.append(None)
        return len(loads)

    settings.CEZBEK_CONFIG_CACHE_SECONDS = 3600
    assert snapshots.cached("probe", load) == 1
    assert snapshots.cached("probe", load) == 1  # kept
    _another_process_publishes()
    assert snapshots.cached("probe", load) == 1  # not asked again within the hour
    # the interval is read again when the setting changes (override_settings, pytest-django's fixture)
    settings.CEZBEK_CONFIG_CACHE_SECONDS = 0
    assert snapshots.cached("probe", load) == 2  # asked at once: the other process's change is seen
    assert snapshots.cached("probe", load) == 2  # the version has not moved since: kept
    _another_process_publishes()
    assert snapshots.cached("probe", load) == 3


def test_a_change_in_this_process_drops_the_copy_at_once(settings, db, django_capture_on_commit_callbacks):
    settings.CEZBEK_CONFIG_CACHE_SECONDS = 3600
    assert snapshots.cached("probe", lambda: "old") == "old"
    with django_capture_on_commit_callbacks() as published:
        snapshots.config_changed()
        assert snapshots.cached("probe", lambda: "new") == "new"  # before the commit, too
    assert len(published) == 1  # the version other processes read, bumped once the change is visible
    assert snapshots.cached("probe", lambda: "newer") == "new"
    assert snapshots.cached("none", lambda: None) is None  # None is never kept
    assert snapshots.cached("none", lambda: "loaded") == "loaded"
