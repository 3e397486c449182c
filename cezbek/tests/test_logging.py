"""JSON logs carry a request id that follows a purchase from the signed POST into the real worker's
log lines for its payout (cezbek/logs.py, cezbek/middleware.py, cezbek/tracing.py)."""

import copy
import io
import json
import logging
import logging.config
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from wallets.models import Payout
from wallets.tests.conftest import breakers_closed, routes, sandbox, sandbox_process, wait_for, wait_terminal, worker  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
PATH = "/api/v1/cashbacks"


def purchase(n: int, **more) -> dict:
    return {"partner_ref": f"LOG-{n}", "msisdn": f"62813{n:08d}", "quantity": 1, "amount": "20000.00", "wallet": "LSAJA", **more}


def json_lines(text: str) -> list[dict]:
    """Every complete JSON line of a log (a worker also prints its banner and billiard's notes as text)."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{") and line.endswith("}")]


@pytest.fixture
def captured(settings):
    """The console handler exactly as settings.LOGGING builds it with CEZBEK_LOG_FORMAT=json, into a buffer."""
    stream = io.StringIO()
    config = copy.deepcopy(settings.LOGGING)
    config["handlers"]["console"]["formatter"] = "json"
    config["filters"]["request_id"]["missing"] = None
    config["handlers"]["console"]["stream"] = stream
    logging.config.dictConfig(config)
    yield stream
    logging.config.dictConfig(settings.LOGGING)


def test_a_signed_purchase_logs_json_lines_carrying_its_request_id(api, wallets, ladder, global_rule, captured):
    response = api.post(PATH, purchase(1), headers={"X-Request-ID": "partner-req-0001"})
    assert response.status_code == 201
    assert response["X-Request-ID"] == "partner-req-0001"
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]  # every line is JSON
    mine = [line for line in lines if line.get("request_id") == "partner-req-0001"]
    http = [line for line in mine if line["logger"] == "cezbek.http"]
    assert len(http) == 1
    assert (http[0]["level"], http[0]["view"], http[0]["method"], http[0]["status"]) == ("INFO", "cashbacks", "POST", 201)
    assert http[0]["message"].startswith("POST /api/v1/cashbacks 201 ")
    assert http[0]["duration_ms"] > 0
    assert http[0]["timestamp"].endswith("+00:00")

    # a refused request logs its warning under its own (generated) id, and nothing leaks between them
    refused = api.post(PATH, purchase(2), timestamp=1)
    assert refused.status_code == 401
    other = refused["X-Request-ID"]
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    warnings = [line for line in lines if line["logger"] in ("cezbek.auth", "django.request")]
    assert {line["logger"] for line in warnings} == {"cezbek.auth", "django.request"}  # Django's comes last, after the middleware
    assert all(line["request_id"] == other for line in warnings)
    # outside any request, no id
    logging.getLogger("cezbek.test").warning("between requests")
    assert json.loads(captured.getvalue().splitlines()[-1])["request_id"] is None


def test_plain_format_shows_the_request_id_in_brackets(api, wallets, ladder, global_rule, settings):
    stream = io.StringIO()
    config = copy.deepcopy(settings.LOGGING)
    config["handlers"]["console"]["formatter"] = "plain"
    config["filters"]["request_id"]["missing"] = "-"
    config["handlers"]["console"]["stream"] = stream
    logging.config.dictConfig(config)
    try:
        assert api.post(PATH, purchase(3), headers={"X-Request-ID": "plain-42"}).status_code == 201
        logging.getLogger("cezbek.test").warning("outside")
    finally:
        logging.config.dictConfig(settings.LOGGING)
    text = stream.getvalue()
    assert " INFO cezbek.http [plain-42] POST /api/v1/cashbacks 201 " in text
    assert " WARNING cezbek.test [-] outside" in text


def test_an_unknown_log_format_is_refused_at_start():
    env = {**os.environ, "CEZBEK_LOG_FORMAT": "xml"}
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "CEZBEK_LOG_FORMAT must be json or plain, not 'xml'" in result.stderr


def test_json_is_the_default_in_production_and_plain_in_development():
    script = "from django.conf import settings; print(settings.CEZBEK_LOG_FORMAT)"
    base = {k: v for k, v in os.environ.items() if k not in ("CEZBEK_LOG_FORMAT", "DJANGO_DEBUG")}
    for debug, expected in (("0", "json"), ("1", "plain")):
        env = {**base, "DJANGO_DEBUG": debug, "DJANGO_SETTINGS_MODULE": "cezbek.settings"}
        out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert out.stdout.strip() == expected, out.stderr


# --- into the real worker -------------------------------------------------------------------------


@pytest.fixture
def json_worker(monkeypatch, request):
    """The e2e harness's real worker (wallets/tests/conftest.py), logging JSON."""
    monkeypatch.setenv("CEZBEK_LOG_FORMAT", "json")
    return request.getfixturevalue("worker")


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_the_request_id_follows_the_purchase_into_the_workers_log_lines(sandbox, json_worker, routes, breakers_closed, api, ladder, captured):  # noqa: F811
    from datetime import timedelta

    from django.utils import timezone

    from cashback.models import CashbackRule

    CashbackRule.objects.create(name="all of it", percentage=Decimal("100"), valid_from=timezone.now() - timedelta(days=1))

    # when a partner posts a purchase with its own request id (and an email: a notification task follows)
    response = api.post(PATH, purchase(7, email="log@example.id"), headers={"X-Request-ID": "trace-7f3a9c"})
    assert response.status_code == 201, response.content
    payout = Payout.objects.get(transaction__kezbek_ref=response.json()["kezbek_ref"])
    wait_terminal([payout.pk], timeout=60)
    payout.refresh_from_db()
    assert payout.status == "SUCCEEDED"

    # then the web side logged it under that id
    web = [json.loads(line) for line in captured.getvalue().splitlines()]
    assert any(line["logger"] == "cezbek.http" and line["request_id"] == "trace-7f3a9c" for line in web)

    # and every worker line about this payout, in every task that touched it, carries the same id
    def payout_lines():
        return [
            line for line in json_lines(json_worker.log_path.read_text())
            if line["logger"] == "cezbek.payouts" and line["message"].startswith(f"payout {payout.pk} ")
        ]

    lines = wait_for(lambda: [line for line in payout_lines() if "→ SUCCEEDED" in line["message"]] and payout_lines(), 10, "the worker's log line of the payout's success")
    assert [line["request_id"] for line in lines] == ["trace-7f3a9c"] * len(lines)
    assert None not in {line["task_id"] for line in lines}
    assert "wallets.payouts_deliver" in {line["task_name"] for line in lines}  # a new payout goes to the batch task
    assert payout.provider.code == "MTRANS"  # LSAJA 20,000: MTRANS's 600 beats XENIT's 750 (routes fixture)
    # Celery's own line for each task run for this payout (the notification the batch queued; the batch
    # itself has none per payout) carries it too
    def done_lines():
        return [
            line for line in json_lines(json_worker.log_path.read_text())
            if line["logger"] == "celery.app.trace" and line.get("data", {}).get("args") == f"({payout.pk},)"
        ]

    done = wait_for(done_lines, 10, "Celery's line of the payout's notification task")
    assert all(line["request_id"] == "trace-7f3a9c" for line in done)
    # while the lines of the sweeper (queued by beat, not by a request) carry none
    def sweeps():
        return [line for line in json_lines(json_worker.log_path.read_text()) if line.get("task_name") == "wallets.payout_sweep"]

    assert all(line["request_id"] is None for line in wait_for(sweeps, 10, "a sweeper run (every second here)"))


# --- the web process under gunicorn ------------------------------------------------------------------


def test_gunicorn_and_the_app_log_json_lines_with_the_request_id(tmp_path):
    import requests

    from cezbek.testing.web import gunicorn_running

    env = {**os.environ, "CEZBEK_LOG_FORMAT": "json", "WEB_CONCURRENCY": "1"}
    log_path = tmp_path / "gunicorn.log"
    with gunicorn_running(env=env, log_path=log_path, args=("--access-logfile", "-")) as (base, _):
        response = requests.get(f"{base}/healthz", headers={"X-Request-ID": "gunicorn-trace-1"}, timeout=5)
        assert response.headers["X-Request-ID"] == "gunicorn-trace-1"
        assert requests.get(f"{base}/no-such-page", timeout=5).status_code == 404  # Django logs a warning
    text = log_path.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line is JSON
    loggers = {line["logger"] for line in lines}
    assert {"gunicorn.error", "gunicorn.access", "cezbek.http", "django.request"} <= loggers
    access = [line for line in lines if line["logger"] == "gunicorn.access" and line["request_id"] == "gunicorn-trace-1"]
    assert len(access) == 1 and '"GET /healthz HTTP/1.1" 200' in access[0]["message"]
    app = [line for line in lines if line["logger"] == "cezbek.http" and line["request_id"] == "gunicorn-trace-1"]
    assert len(app) == len(access) and all(line["status"] == 200 for line in app)
