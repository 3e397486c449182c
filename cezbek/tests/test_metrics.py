"""/metrics (Prometheus) after real signed API requests: the latency histogram, payouts by state and
provider equal to the database's counts, and the queue depth equal to the broker's own list length.
The exposition is parsed with prometheus_client's parser; one test runs the real gunicorn with two
worker processes and checks that every scrape sees every worker's requests."""

import os
import signal
import threading
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from cezbek.celery import app as celery_app
from cezbek.testing.web import gunicorn_running
from wallets.models import Payout, Provider
from wallets.services import NEW_PAYOUTS

PATH = "/api/v1/cashbacks"


def parse(text: str) -> dict:
    """{metric family name: [(sample name, labels, value), …]}"""
    return {family.name: [(s.name, s.labels, s.value) for s in family.samples] for family in text_string_to_metric_families(text)}


def scrape(client) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    return parse(response.content.decode())


def request_count(families: dict, view: str, method: str, status: str) -> float:
    for name, labels, value in families.get("cezbek_http_request_duration_seconds", []):
        if name.endswith("_count") and labels == {"view": view, "method": method, "status": status}:
            return value
    return 0.0


def purchase(n: int, wallet: str = "LSAJA") -> dict:
    return {"partner_ref": f"MET-{n}", "msisdn": f"62812{n:08d}", "quantity": 1, "amount": "100000.00", "wallet": wallet}


@pytest.fixture
def broker_queues():
    """The Celery queues of this run, emptied before and after (no worker consumes them here)."""
    import redis

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    names = sorted(celery_app.amqp.queues)

    def clear():
        NEW_PAYOUTS.flush()  # an earlier test's gathered payouts would land in the queues later
        for name in names:
            client.delete(name, *[f"{name}\x06\x16{p}" for p in (3, 6, 9)])

    clear()
    yield client, names
    clear()


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_metrics_after_real_signed_requests(client, api, wallets, ladder, global_rule, broker_queues, settings):
    redis_client, queues = broker_queues
    settings.CEZBEK_PAYOUT_GATHER_SECONDS = 0  # one message per payout, queued by its request: a known depth
    before = scrape(client)

    # when a partner posts four purchases, repeats one, and reads one back
    refs = []
    for n in range(1, 5):
        response = api.post(PATH, purchase(n, wallet="GPAID" if n == 4 else "LSAJA"))
        assert response.status_code == 201, response.content
        refs.append(response.json()["kezbek_ref"])
    assert api.post(PATH, purchase(1), timestamp=int(time.time()) - 120).status_code == 200  # a repeat, signed anew
    assert api.get(f"{PATH}/{refs[0]}").status_code == 200
    # and delivery moved some payouts on (as a worker would have)
    mtrans = Provider.objects.create(code="MTRANS", name="Middletrans", kind="aggregator", priority=2)
    xenit = Provider.objects.create(code="XENIT", name="Xenit", kind="aggregator", priority=3)
    payouts = list(Payout.objects.order_by("id"))
    Payout.objects.filter(pk=payouts[0].pk).update(status="SUCCEEDED", provider=mtrans)
    Payout.objects.filter(pk=payouts[1].pk).update(status="SUCCEEDED", provider=xenit)
    Payout.objects.filter(pk=payouts[2].pk).update(status="MANUAL_REVIEW", provider=xenit)

    after = scrape(client)

    # then the histogram counted each request by view, method and status, with consistent buckets
    assert request_count(after, "cashbacks", "POST", "201") - request_count(before, "cashbacks", "POST", "201") == 4
    assert request_count(after, "cashbacks", "POST", "200") - request_count(before, "cashbacks", "POST", "200") == 1
    assert request_count(after, "cashback-detail", "GET", "200") - request_count(before, "cashback-detail", "GET", "200") == 1
    samples = after["cezbek_http_request_duration_seconds"]
    labels = {"view": "cashbacks", "method": "POST", "status": "201"}
    buckets = {s[1]["le"]: s[2] for s in samples if s[0].endswith("_bucket") and {k: v for k, v in s[1].items() if k != "le"} == labels}
    assert buckets["+Inf"] == request_count(after, "cashbacks", "POST", "201")
    assert list(buckets.values()) == sorted(buckets.values())  # cumulative
    assert next(s[2] for s in samples if s[0].endswith("_sum") and s[1] == labels) > 0

    # the payout gauges are the database's own counts and sums, per state and provider
    expected_count = Counter()
    expected_amount = Counter()
    for status, provider, amount in Payout.objects.values_list("status", "provider__code", "amount"):
        expected_count[(status, provider or "none")] += 1
        expected_amount[(status, provider or "none")] += amount
    assert expected_count == {("SUCCEEDED", "MTRANS"): 1, ("SUCCEEDED", "XENIT"): 1, ("MANUAL_REVIEW", "XENIT"): 1, ("PENDING", "none"): 1}
    gauges = {(labels["state"], labels["provider"]): value for _, labels, value in after["cezbek_payouts"]}
    assert gauges == {key: float(n) for key, n in expected_count.items()}
    amounts = {(labels["state"], labels["provider"]): value for _, labels, value in after["cezbek_payouts_amount_idr"]}
    assert amounts == {key: float(total) for key, total in expected_amount.items()}
    assert amounts[("PENDING", "none")] == float(Decimal("1000.00"))  # 1 % of 100,000

    # the queue depth is the broker's list length: four payouts queued on commit, nobody consuming
    depths = {labels["queue"]: value for _, labels, value in after["cezbek_celery_queue_depth"]}
    assert set(depths) == set(queues)
    for queue in queues:
        assert depths[queue] == redis_client.llen(queue)
    assert depths[settings.CELERY_TASK_DEFAULT_QUEUE] == 4
    up = {labels["source"]: value for _, labels, value in after["cezbek_metrics_source_up"]}
    assert up == {"database": 1.0, "broker": 1.0}


@pytest.mark.django_db
def test_an_unreachable_broker_leaves_the_other_metrics_in_place(client, settings):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{port}/0"
    families = scrape(client)
    assert "cezbek_celery_queue_depth" not in families
    up = {labels["source"]: value for _, labels, value in families["cezbek_metrics_source_up"]}
    assert up == {"database": 1.0, "broker": 0.0}
    assert "cezbek_http_request_duration_seconds" in families


def test_metrics_can_be_protected_with_a_bearer_token(client, db, settings):
    settings.CEZBEK_METRICS_TOKEN = "scrape-token-0123456789"
    refused = client.get("/metrics")
    assert refused.status_code == 401
    assert refused["WWW-Authenticate"].startswith("Bearer")
    assert b"cezbek_" not in refused.content
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Basic scrape-token-0123456789"}).status_code == 401
    allowed = client.get("/metrics", headers={"Authorization": "Bearer scrape-token-0123456789"})
    assert allowed.status_code == 200
    assert "cezbek_payouts" in parse(allowed.content.decode()) or b"cezbek_metrics_source_up" in allowed.content
    # the probes stay open
    assert client.get("/healthz").status_code == 200


# --- several gunicorn workers ------------------------------------------------------------------


def worker_pids(master: int) -> set[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return {int(pid) for pid in children}


@pytest.mark.postgres
@pytest.mark.redis  # without REDIS_URL, gunicorn.conf.py runs one worker (the guards live in its memory)
@pytest.mark.django_db
def test_every_scrape_sees_every_gunicorn_workers_requests(tmp_path):
    db = connection.settings_dict
    metrics_dir = tmp_path / "prometheus"
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "WEB_CONCURRENCY": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    env.pop("CEZBEK_PROMETHEUS_DIR_TEMPORARY", None)

    def both_workers(base, server) -> bool:
        return len(worker_pids(server.pid)) == 2

    with gunicorn_running(env=env, log_path=tmp_path / "gunicorn.log", ready=both_workers) as (base, server):
        def count(families):
            return request_count(families, "healthz", "GET", "200")

        def burst(threads: int, each: int) -> None:
            """Requests from several threads at once, so that both workers serve some."""
            statuses = []

            def hit():
                statuses.extend(requests.get(f"{base}/healthz", timeout=10).status_code for _ in range(each))

            pool = [threading.Thread(target=hit) for _ in range(threads)]
            for t in pool:
                t.start()
            for t in pool:
                t.join()
            assert statuses == [200] * threads * each

        # given both workers booted and serving (each writes its own file on its first request)
        deadline = time.monotonic() + 60
        while len(list(metrics_dir.glob("histogram_*.db"))) < 2:
            assert time.monotonic() < deadline, "the second worker never served a request"
            burst(4, 3)

        # when 60 requests arrive at once
        start = count(parse(requests.get(f"{base}/metrics", timeout=10).text))
        burst(6, 10)

        # then every scrape, whichever worker answers it, sees all 60
        assert len(list(metrics_dir.glob("histogram_*.db"))) == 2
        for _ in range(6):
            assert count(parse(requests.get(f"{base}/metrics", timeout=10).text)) == start + 60

        # and a worker that dies takes nothing with it: its requests stay counted
        victim = min(worker_pids(server.pid))
        os.kill(victim, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while victim in worker_pids(server.pid) or len(worker_pids(server.pid)) < 2:
            assert time.monotonic() < deadline, "gunicorn did not replace the worker"
            time.sleep(0.2)
        for _ in range(4):
            assert count(parse(requests.get(f"{base}/metrics", timeout=10).text)) == start + 60
    # a directory the environment named is kept (only a temporary one is removed at exit)
    assert metrics_dir.is_dir()
