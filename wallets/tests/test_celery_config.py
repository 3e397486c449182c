"""Celery is set for at-least-once delivery (issue: late acks, reject on worker lost, a visibility
timeout longer than any countdown we schedule), and the sweeper is on beat's schedule."""

from django.conf import settings

from cezbek.celery import app


def test_tasks_are_acknowledged_late_and_requeued_when_a_worker_dies():
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True


def test_visibility_timeout_outlasts_every_countdown():
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        return  # no visibility timeout: the filesystem broker never redelivers on its own
    visibility = app.conf.broker_transport_options["visibility_timeout"]
    longest_countdown = max(
        settings.CEZBEK_RETRY_MAX_SECONDS, settings.CEZBEK_CALLBACK_WAIT_SECONDS, settings.CEZBEK_UNKNOWN_GRACE_SECONDS
    )
    assert visibility > 2 * longest_countdown


def test_the_sweeper_runs_on_beat():
    app.loader.import_default_modules()  # what a worker does at start: autodiscover the tasks
    schedule = app.conf.beat_schedule
    assert schedule["payout-sweeper"]["task"] == "wallets.payout_sweep"
    assert schedule["payout-sweeper"]["task"] in app.tasks
    assert schedule["payout-sweeper"]["schedule"] == settings.CEZBEK_SWEEP_INTERVAL_SECONDS


def test_the_sweeper_resumes_more_often_than_a_sending_payout_goes_stale():
    assert settings.CEZBEK_SWEEP_INTERVAL_SECONDS < settings.CEZBEK_SENDING_STALE_SECONDS
    # a payout is only called stale once no request for it can still be running
    assert settings.CEZBEK_SENDING_STALE_SECONDS > settings.CEZBEK_PROVIDER_CONNECT_TIMEOUT + settings.CEZBEK_PROVIDER_READ_TIMEOUT
    assert settings.CEZBEK_UNKNOWN_GRACE_SECONDS > settings.CEZBEK_PROVIDER_CONNECT_TIMEOUT + settings.CEZBEK_PROVIDER_READ_TIMEOUT


def test_workers_keep_their_database_connections_between_tasks():
    from celery.fixups.django import DjangoWorkerFixup
    from celery.signals import task_postrun, task_prerun

    from cezbek.celery import _close_old_connections

    # Celery's fixup would close every connection around every task; it never gets to…
    assert DjangoWorkerFixup(app).db_reuse_max >= 2**62
    # …and instead, as Django does around each request, only broken or expired ones are closed
    receivers = [r() for _, r in task_prerun.receivers] + [r() for _, r in task_postrun.receivers]
    assert receivers.count(_close_old_connections) == 2
