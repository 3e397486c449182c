"""Webhooks to partners (API.md "Webhooks to partners", DOMAIN.md §6), for real.

Payouts reach SUCCEEDED / FAILED / CANCELLED through the real services against the provider sandbox
over HTTP (Celery runs eagerly in the test process, or as a real worker in the end-to-end test); the
webhooks reach a real HTTP server on a free port, which answers scripted statuses and records what it
received, and their signatures are checked with partners/signing.py exactly as a partner checks them.
Time moves through the stored timestamps, never by sleeping.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from partners import signing
from partners.models import Partner, WebhookAttempt, WebhookDelivery
from partners.tasks import webhook_deliver, webhooks_retry_due
from wallets import services as payout_services
from wallets.models import Payout
from wallets.tasks import payout_notify
from wallets.tests.conftest import (  # noqa: F401  (the sandbox and the worker, as fixtures)
    breakers_closed,
    routes,
    sandbox,
    sandbox_process,
    wait_for,
    worker,
)

PATH = "/api/v1/cashbacks"
HOOK_PATH = "/hooks/cezbek?source=kezbek&v=1"


# --- a partner's receiver -------------------------------------------------------------------------


class Received:
    def __init__(self, method: str, path: str, headers: dict, body: bytes):
        self.method, self.path, self.headers, self.body = method, path, headers, body

    @property
    def json(self) -> dict:
        return json.loads(self.body)


class Receiver:
    """A partner's webhook endpoint: records every request and answers the next scripted status.

    A script entry is a status code, ("timeout", seconds) to answer too late, or (status, headers).
    Once the script is used up it answers 200.
    """

    def __init__(self):
        self.received: list[Received] = []
        self.script: list = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.received.append(Received(self.command, self.path, dict(self.headers), body))
                    step = receiver.script.pop(0) if receiver.script else 200
                headers = {}
                if isinstance(step, tuple) and step[0] == "timeout":
                    time.sleep(step[1])
                    step = 200
                elif isinstance(step, tuple):
                    step, headers = step
                if isinstance(step, float):  # slow but in time
                    time.sleep(step)
                    step = 200
                try:
                    self.send_response(step)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender gave up waiting

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{HOOK_PATH}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def count(self) -> int:
        with self.lock:
            return len(self.received)


def verify_like_a_partner(request: Received, *, key_id: str, secret: str) -> None:
    """What a partner's endpoint does with the code that signs its own requests (partners/signing.py)."""
    assert request.method == "POST"
    assert request.headers[signing.KEY_HEADER] == key_id
    timestamp = request.headers[signing.TIMESTAMP_HEADER]
    assert abs(time.time() - int(timestamp)) <= 300
    expected = signing.sign(secret=secret, method=request.method, path=request.path, timestamp=timestamp, body=request.body)
    assert signing.signature_matches(expected=expected, given=request.headers[signing.SIGNATURE_HEADER])


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def eager(monkeypatch):
    """Celery tasks run in the test process as they are queued: the services' own on-commit path."""
    from cezbek.celery import app

    # The namespaced name: Celery 5.6 reads task_always_eager from the CELERY_-prefixed key it was configured with.
    monkeypatch.setattr(app.conf, "CELERY_TASK_ALWAYS_EAGER", True)


@pytest.fixture
def fast_webhooks(settings):
    settings.CEZBEK_WEBHOOK_CONNECT_TIMEOUT = 1.0
    settings.CEZBEK_WEBHOOK_READ_TIMEOUT = 0.5
    settings.CEZBEK_WEBHOOK_RETRY_BASE_SECONDS = 10
    settings.CEZBEK_WEBHOOK_RETRY_MAX_SECONDS = 1000
    settings.CEZBEK_WEBHOOK_RETRY_WINDOW_SECONDS = 24 * 3600
    return settings


@pytest.fixture
def hooked(partner, receiver):
    """The partner LAJADA with its webhook URL at the receiver; (partner, its credential)."""
    lajada, credential = partner
    Partner.objects.filter(pk=lajada.pk).update(webhook_url=receiver.url)
    lajada.refresh_from_db()
    return lajada, credential


@pytest.fixture
def buy(api, ladder, global_rule, routes, breakers_closed, eager, fast_webhooks):
    """Posts a purchase through the partner API; the payout is delivered at once through the sandbox."""
    counter = iter(range(1, 10**6))

    def post(*, wallet: str = "LSAJA", amount: str = "100000.00", email: str | None = None) -> Payout:
        n = next(counter)
        purchase = {"partner_ref": f"WH/{n}", "msisdn": f"62812{n:08d}", "quantity": 1, "amount": amount, "wallet": wallet}
        if email:
            purchase["email"] = email
        response = api.post(PATH, purchase)
        assert response.status_code == 201, response.content
        return Payout.objects.select_related("transaction").get(transaction__kezbek_ref=response.json()["kezbek_ref"])

    return post


def make_due(delivery: WebhookDelivery, **fields) -> None:
    """Moves the clock for one delivery: its next attempt is due now (and any other stored time given)."""
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1), **fields)


def attempts_of(delivery: WebhookDelivery) -> list[tuple]:
    return list(WebhookAttempt.objects.filter(delivery=delivery).order_by("number").values_list("number", "status_code", "outcome", "error"))


ALL_LSAJA_ROUTES_REFUSE = {code: {"refuse_rate": 1} for code in ("LSAJAH2H", "MTRANS", "XENIT")}

pytestmark = [pytest.mark.django_db(transaction=True)]


# --- terminal states reach the partner, signed ----------------------------------------------------


def test_a_succeeded_payout_is_posted_signed_and_the_partner_verifies_it(hooked, receiver, buy, api, sandbox):
    lajada, credential = hooked
    payout = buy()
    payout.refresh_from_db()
    assert payout.status == "SUCCEEDED"
    assert receiver.count() == 1
    request = receiver.received[0]
    # the partner checks it with the code that signs its own requests
    verify_like_a_partner(request, key_id=credential.key_id, secret=credential.secret)
    assert request.path == HOOK_PATH  # signed over the path with its query string, as sent
    assert request.headers["Content-Type"] == "application/json"
    body = request.json
    document = api.get(f"{PATH}/{payout.transaction.kezbek_ref}").json()
    assert list(body) == ["event", "kezbek_ref", "partner_ref", "payout", "sent_at"]
    assert body["event"] == "payout.succeeded"
    assert (body["kezbek_ref"], body["partner_ref"]) == (document["kezbek_ref"], document["partner_ref"])
    assert body["payout"] == document["payout"] == {"status": "SUCCEEDED", "provider": "MTRANS", "flags": []}
    sent_at = datetime.fromisoformat(body["sent_at"])
    assert sent_at.utcoffset() is not None and abs((timezone.now() - sent_at).total_seconds()) < 30
    delivery = WebhookDelivery.objects.get()
    assert request.headers["X-Cezbek-Delivery"] == str(delivery.pk)
    assert (delivery.payout_id, delivery.partner_id, delivery.event, delivery.state, delivery.attempts) == (
        payout.pk, lajada.pk, "payout.succeeded", "DELIVERED", 1,
    )
    attempt = WebhookAttempt.objects.get()
    assert (attempt.status_code, attempt.outcome, attempt.url) == (200, "DELIVERED", receiver.url)
    assert attempt.latency_ms is not None and attempt.latency_ms < 5000


def test_a_tampered_webhook_does_not_verify(hooked, receiver, buy, sandbox):
    """The check above could fail: another secret or a changed byte breaks the signature."""
    _, credential = hooked
    buy()
    request = receiver.received[0]
    timestamp = request.headers[signing.TIMESTAMP_HEADER]
    given = request.headers[signing.SIGNATURE_HEADER]
    other = signing.sign(secret="kzs_not-the-secret", method="POST", path=request.path, timestamp=timestamp, body=request.body)
    tampered = signing.sign(secret=credential.secret, method="POST", path=request.path, timestamp=timestamp, body=request.body.replace(b"SUCCEEDED", b"FAILED"))
    assert not signing.signature_matches(expected=other, given=given)
    assert not signing.signature_matches(expected=tampered, given=given)


def test_webhooks_are_signed_with_the_partners_newest_live_key(hooked, receiver, buy, sandbox):
    from partners.services import credential_issue, credential_revoke

    lajada, first = hooked
    newer = credential_issue(partner=lajada)
    newest = credential_issue(partner=lajada)
    credential_revoke(partner=lajada, key_id=newest.key_id)
    buy()
    # the newest live one: `newer` (the newest was revoked)
    verify_like_a_partner(receiver.received[0], key_id=newer.key_id, secret=newer.secret)
    assert first.key_id != newer.key_id


def test_a_failed_payout_is_posted(hooked, receiver, buy, sandbox):
    _, credential = hooked
    sandbox.faults(ALL_LSAJA_ROUTES_REFUSE)
    payout = buy()
    payout.refresh_from_db()
    assert payout.status == "FAILED"
    assert receiver.count() == 1
    verify_like_a_partner(receiver.received[0], key_id=credential.key_id, secret=credential.secret)
    assert receiver.received[0].json["event"] == "payout.failed"
    assert receiver.received[0].json["payout"]["status"] == "FAILED"


def test_a_cancelled_payout_is_posted(hooked, receiver, buy, sandbox, settings):
    _, credential = hooked
    settings.CEZBEK_VELOCITY_LIMIT = Decimal("1.00")  # every payout is HELD for an operator
    payout = buy()
    assert payout.status == "HELD" and receiver.count() == 0
    payout_services.payout_cancel(payout=payout, actor=None, note="fraud check")
    assert receiver.count() == 1
    verify_like_a_partner(receiver.received[0], key_id=credential.key_id, secret=credential.secret)
    body = receiver.received[0].json
    assert (body["event"], body["payout"]) == ("payout.cancelled", {"status": "CANCELLED", "provider": None, "flags": ["velocity"]})


def test_manual_review_sends_nothing_until_an_operator_resolves_it(hooked, receiver, buy, sandbox):
    sandbox.faults({"GOPAIDH2H": {"unknown_rate": 1}})  # GoPaid has no status inquiry: MANUAL_REVIEW
    payout = buy(wallet="GPAID")
    payout.refresh_from_db()
    assert payout.status == "MANUAL_REVIEW"
    assert receiver.count() == 0 and not WebhookDelivery.objects.exists()
    payout_services.payout_resolve_manually(payout=payout, actor=None, succeeded=True, note="GoPaid confirmed by phone")
    assert [r.json["event"] for r in receiver.received] == ["payout.succeeded"]


def test_no_webhook_url_no_delivery(partner, receiver, buy, sandbox):
    payout = buy()
    payout.refresh_from_db()
    assert payout.status == "SUCCEEDED"
    assert receiver.count() == 0 and not WebhookDelivery.objects.exists()


def test_running_the_tasks_again_sends_nothing_more(hooked, receiver, buy, sandbox):
    payout = buy()
    delivery = WebhookDelivery.objects.get()
    # at-least-once Celery: the notify and deliver tasks run again
    payout_notify.delay(payout.pk)
    payout_notify.delay(payout.pk)
    webhook_deliver.delay(delivery.pk)
    webhooks_retry_due.delay()
    assert receiver.count() == 1
    assert WebhookDelivery.objects.count() == 1 and WebhookAttempt.objects.count() == 1
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("DELIVERED", 1)


# --- retries, stops, giving up ----------------------------------------------------------------------


def test_500_timeout_408_and_429_are_retried_with_back_off_then_delivered(hooked, receiver, buy, sandbox):
    _, credential = hooked
    receiver.script = [500, ("timeout", 1.5), 408, (429, {"Retry-After": "120"}), 200]
    buy()
    delivery = WebhookDelivery.objects.get()
    ceilings = {1: 10, 2: 20, 3: 40}
    for number in range(1, 6):
        if number > 1:
            make_due(delivery)
            assert webhooks_retry_due.delay().get() != {}
        delivery.refresh_from_db()
        last = WebhookAttempt.objects.filter(delivery=delivery).latest("id")
        assert last.number == number == delivery.attempts
        if number in ceilings:  # exponential back-off with jitter, from the attempt's time
            wait = (delivery.next_attempt_at - last.created_at).total_seconds()
            assert ceilings[number] / 2 - 1 <= wait <= ceilings[number] + 1, (number, wait)
        if number == 4:  # the partner's Retry-After
            assert (delivery.next_attempt_at - last.created_at).total_seconds() >= 119
    assert (delivery.state, delivery.next_attempt_at, delivery.last_status_code) == ("DELIVERED", None, 200)
    assert attempts_of(delivery) == [
        (1, 500, "RETRY", "HTTP 500"),
        (2, None, "RETRY", "read timeout"),
        (3, 408, "RETRY", "HTTP 408"),
        (4, 429, "RETRY", "HTTP 429"),
        (5, 200, "DELIVERED", ""),
    ]
    latencies = list(WebhookAttempt.objects.filter(delivery=delivery).order_by("number").values_list("latency_ms", flat=True))
    assert all(ms is not None for ms in latencies) and latencies[1] >= 450  # the read timeout is 0.5 s
    assert receiver.count() == 5
    for request in receiver.received:  # every attempt signed afresh, same event
        verify_like_a_partner(request, key_id=credential.key_id, secret=credential.secret)
        assert request.json["event"] == "payout.succeeded"
    # delivered: nothing is due any more
    webhooks_retry_due.delay()
    assert receiver.count() == 5


def test_an_unreachable_partner_is_retried(hooked, buy, sandbox, receiver):
    lajada, _ = hooked
    Partner.objects.filter(pk=lajada.pk).update(webhook_url="http://127.0.0.1:9/nobody-listens")
    buy()
    delivery = WebhookDelivery.objects.get()
    assert (delivery.state, delivery.attempts) == ("PENDING", 1)
    attempt = WebhookAttempt.objects.get()
    assert (attempt.status_code, attempt.outcome) == (None, "RETRY") and attempt.error.startswith("ConnectionError")
    # the partner fixes its URL; the next attempt goes there
    Partner.objects.filter(pk=lajada.pk).update(webhook_url=receiver.url)
    make_due(delivery)
    webhooks_retry_due.delay()
    delivery.refresh_from_db()
    assert (delivery.state, receiver.count()) == ("DELIVERED", 1)


def test_a_secret_that_cannot_be_decrypted_is_a_logged_retry_not_a_silent_loop(hooked, receiver, buy, sandbox):
    from partners.models import PartnerCredential
    from partners.services import credential_issue

    lajada, _ = hooked
    newest = credential_issue(partner=lajada)  # signs the webhooks; the older key still signs our API calls
    PartnerCredential.objects.filter(key_id=newest.key_id).update(secret_encrypted="gAAAAA-not-a-fernet-token")
    buy()
    delivery = WebhookDelivery.objects.get()
    assert (delivery.state, delivery.attempts, receiver.count()) == ("PENDING", 1, 0)
    [(number, status, outcome, error)] = attempts_of(delivery)
    assert (number, status, outcome) == (1, None, "RETRY") and "cannot be decrypted" in error
    assert "gAAAAA" not in error  # never the stored secret


@pytest.mark.parametrize("status", [400, 404, 410])
def test_a_4xx_refusal_stops_the_delivery_for_good(hooked, receiver, buy, sandbox, status):
    receiver.script = [status]
    buy()
    delivery = WebhookDelivery.objects.get()
    assert (delivery.state, delivery.next_attempt_at, delivery.last_status_code) == ("STOPPED", None, status)
    assert attempts_of(delivery) == [(1, status, "STOPPED", f"HTTP {status}")]
    # nothing is ever due again, whatever the clock says
    WebhookDelivery.objects.filter(pk=delivery.pk).update(first_attempt_at=timezone.now() - timedelta(hours=1))
    assert webhooks_retry_due.delay().get() == {}
    webhook_deliver.delay(delivery.pk)
    assert receiver.count() == 1


def test_retries_end_24_hours_after_the_first_attempt(hooked, receiver, buy, sandbox, settings):
    receiver.script = [500, 503, 502, 200]
    buy()
    delivery = WebhookDelivery.objects.get()
    window = settings.CEZBEK_WEBHOOK_RETRY_WINDOW_SECONDS
    # 23 h 59 min 55 s later: retried, and the next attempt is not later than the window's end
    first = timezone.now() - timedelta(seconds=window - 5)
    make_due(delivery, first_attempt_at=first)
    webhooks_retry_due.delay()
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("PENDING", 2)
    assert delivery.next_attempt_at <= first + timedelta(seconds=window)
    # past the window: the next failure is the last
    make_due(delivery, first_attempt_at=timezone.now() - timedelta(seconds=window + 1))
    webhooks_retry_due.delay()
    delivery.refresh_from_db()
    assert (delivery.state, delivery.next_attempt_at, delivery.attempts) == ("GAVE_UP", None, 3)
    assert [a[2] for a in attempts_of(delivery)] == ["RETRY", "RETRY", "GAVE_UP"]
    webhooks_retry_due.delay()
    assert receiver.count() == 3  # the scripted 200 was never asked for


def test_a_new_event_supersedes_a_stale_one_still_retrying(hooked, receiver, buy, sandbox):
    """FAILED (partner down), then an operator's retry succeeds: the stale payout.failed is not sent again."""
    sandbox.faults(ALL_LSAJA_ROUTES_REFUSE)
    receiver.script = [503]
    payout = buy()
    failed = WebhookDelivery.objects.get(event="payout.failed")
    assert failed.state == "PENDING"
    sandbox.faults({code: {"refuse_rate": 0} for code in ALL_LSAJA_ROUTES_REFUSE})
    payout.refresh_from_db()
    payout_services.payout_retry(payout=payout, actor=None, note="routes fixed")
    payout.refresh_from_db()
    assert payout.status == "SUCCEEDED"
    failed.refresh_from_db()
    assert (failed.state, failed.next_attempt_at) == ("SUPERSEDED", None)
    make_due(failed)
    webhooks_retry_due.delay()
    assert [r.json["event"] for r in receiver.received] == ["payout.failed", "payout.succeeded"]


# --- the admin ----------------------------------------------------------------------------------------


def test_operators_see_deliveries_with_their_attempts_and_re_send_one(hooked, receiver, buy, sandbox, admin_client, django_user_model):
    receiver.script = [410]
    payout = buy()
    delivery = WebhookDelivery.objects.get()
    assert delivery.state == "STOPPED"
    changelist = reverse("admin:partners_webhookdelivery_changelist")
    for query in ["", "?state__exact=STOPPED", "?event__exact=payout.succeeded", f"?partner__id__exact={hooked[0].pk}", f"?q={payout.transaction.kezbek_ref}"]:
        page = admin_client.get(changelist + query)
        assert page.status_code == 200 and payout.transaction.kezbek_ref in page.content.decode(), query
    assert payout.transaction.kezbek_ref not in admin_client.get(changelist + "?state__exact=DELIVERED").content.decode()
    change = admin_client.get(reverse("admin:partners_webhookdelivery_change", args=[delivery.pk])).content.decode()
    assert "HTTP 410" in change and "STOPPED" in change  # the attempts inline
    # re-send
    response = admin_client.post(changelist, {"action": "resend", "_selected_action": [delivery.pk]}, follow=True)
    assert response.status_code == 200 and "queued to be sent again" in response.content.decode()
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("DELIVERED", 2)
    assert attempts_of(delivery) == [(1, 410, "STOPPED", "HTTP 410"), (2, 200, "DELIVERED", "")]
    assert receiver.count() == 2
    from django.contrib.admin.models import LogEntry

    assert LogEntry.objects.filter(object_id=str(delivery.pk), change_message="Re-sent").count() == 1
    # staff who may only view deliveries get no re-send
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_webhookdelivery"))
    admin_client.force_login(viewer)
    admin_client.post(changelist, {"action": "resend", "_selected_action": [delivery.pk]})
    assert receiver.count() == 2 and WebhookAttempt.objects.count() == 2


# --- two periodic runs at once (PostgreSQL, threads) ----------------------------------------------------


@pytest.mark.postgres
def test_two_concurrent_retry_runs_never_send_one_delivery_twice(hooked, receiver, buy, sandbox):
    receiver.script = [500] * 12
    for _ in range(12):
        buy()
    deliveries = list(WebhookDelivery.objects.order_by("id"))
    assert len(deliveries) == 12 and all(d.state == "PENDING" and d.attempts == 1 for d in deliveries)
    WebhookDelivery.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    receiver.script = [0.05] * 12  # 200, each after 50 ms: the runs overlap
    barrier = threading.Barrier(2)
    results, errors = [], []

    def run():
        try:
            barrier.wait()
            results.append(webhooks_retry_due())  # the task's body, as a worker runs it
        except Exception as exc:  # noqa: BLE001 — reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sum(r.get("DELIVERED", 0) for r in results) == 12
    second_round = [r for r in receiver.received[12:]]
    sent_ids = [r.headers["X-Cezbek-Delivery"] for r in second_round]
    assert sorted(sent_ids) == sorted(str(d.pk) for d in deliveries)  # each exactly once
    assert set(WebhookDelivery.objects.values_list("state", "attempts")) == {("DELIVERED", 2)}
    assert WebhookAttempt.objects.count() == 24


# --- end to end: the real worker ------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.e2e
def test_the_real_worker_delivers_a_payout_and_its_webhook(hooked, receiver, sandbox, worker, routes, breakers_closed, api, ladder, global_rule):
    _, credential = hooked
    receiver.script = [503]  # the first attempt fails: the worker's own periodic run retries it
    response = api.post(PATH, {"partner_ref": "E2E/WH/1", "msisdn": "628118770510", "quantity": 1, "amount": "100000.00", "wallet": "LSAJA"})
    assert response.status_code == 201, response.content
    kezbek_ref = response.json()["kezbek_ref"]
    wait_for(lambda: receiver.count() >= 1, 40, "the worker's first webhook")
    # the receiver answers before the worker records the answer: wait for the attempt's row
    wait_for(lambda: WebhookAttempt.objects.exists(), 20, "the first attempt to be recorded")
    delivery = WebhookDelivery.objects.get()
    assert (delivery.state, delivery.last_status_code) == ("PENDING", 503)
    make_due(delivery)
    # due now: queue one run of the periodic task, as beat does
    webhooks_retry_due.apply_async()
    wait_for(lambda: receiver.count() >= 2, 40, "the retried webhook")
    wait_for(lambda: WebhookDelivery.objects.filter(state="DELIVERED").exists(), 20, "the delivery to be recorded")
    for request in receiver.received:
        verify_like_a_partner(request, key_id=credential.key_id, secret=credential.secret)
        assert (request.json["event"], request.json["kezbek_ref"]) == ("payout.succeeded", kezbek_ref)
    assert receiver.received[-1].json["payout"]["status"] == "SUCCEEDED"
    assert [a[1] for a in attempts_of(WebhookDelivery.objects.get())] == [503, 200]
    assert Payout.objects.get(transaction__kezbek_ref=kezbek_ref).status == "SUCCEEDED"
