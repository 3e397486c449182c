"""The sandbox as a real subprocess, driven over HTTP. No Django: run with ``-p no:django``.

    cd /work/main && .venv/bin/python -m pytest wallets/sandbox/tests -p no:django -q
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[3]
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
MSISDN = "628111222333"

LSAJA_LOGIN = {"email": "cezbek@sandbox.local", "password": "lsaja-sandbox-secret"}
MTRANS_AUTH = ("cezbek", "mtrans-sandbox-secret")
GOPAID_KEY = {"X-Api-Key": "gopaid-sandbox-key"}
JOSVO_KEY = {"X-Api-Key": "josvo-sandbox-key"}
XENIT_KEY = {"X-Api-Key": "xenit-sandbox-key"}
SECRETS = ("lsaja-sandbox-secret", "gopaid-sandbox-key", "josvo-sandbox-key", "mtrans-sandbox-secret",
           "xenit-sandbox-key", "xenit-callback-token")


# -- process helpers ---------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DJANGO_", "SANDBOX_", "CEZBEK_")) and k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def start(args, log_path: Path, env=None, port=None):
    port = port or free_port()
    log = open(log_path, "ab")
    argv = [sys.executable, "-m", "wallets.sandbox", *args]
    if "--port" not in args and not (env or {}).get("SANDBOX_PORT"):
        argv += ["--port", str(port)]
    proc = subprocess.Popen(argv, cwd=REPO, env=env or clean_env(), stdout=subprocess.DEVNULL, stderr=log)
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sandbox exited with {proc.returncode}: {log_path.read_text()}")
        try:
            if requests.get(url + "/_sandbox/health", timeout=0.5).json() == {"ok": True}:
                return proc, url
        except requests.RequestException:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("sandbox did not become healthy: " + log_path.read_text())


def stop(proc) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


@pytest.fixture(scope="module")
def sandbox_log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sandbox") / "sandbox.log"


@pytest.fixture(scope="module")
def sandbox(sandbox_log):
    proc, url = start(["--seed", "7"], sandbox_log)
    try:
        yield url
    finally:
        assert stop(proc) == 0, "graceful shutdown on SIGTERM exits 0"


@pytest.fixture(autouse=True)
def fresh(request):
    if "sandbox" in request.fixturenames:
        url = request.getfixturevalue("sandbox")
        assert requests.post(url + "/_sandbox/reset").json() == {"ok": True}


# -- HTTP helpers ------------------------------------------------------------------------------
def as_json(response):
    return json.loads(response.text, parse_float=Decimal)


def post_json(url, text: str, **kwargs):
    """POST a JSON body given as text, so that amounts travel exactly as written (10000.50)."""
    return requests.post(url, data=text.encode(), headers={"Content-Type": "application/json",
                                                          **kwargs.pop("headers", {})}, **kwargs)


def ledger(url, provider=None):
    params = {"provider": provider} if provider else None
    response = requests.get(url + "/_sandbox/ledger", params=params)
    assert response.status_code == 200
    return response.json()["credits"]


def set_faults(url, **per_provider):
    response = requests.post(url + "/_sandbox/faults", json=per_provider)
    assert response.status_code == 200, response.text
    return response.json()


def lsaja_token(url) -> str:
    response = requests.post(url + "/lsajah2h/api/v1/thirdparty/authorization", json=LSAJA_LOGIN)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"token", "thirdPartyName"} and body["thirdPartyName"] == "Cezbek"
    return body["token"]


def send(url, code: str, ref: str | None = None, amount="15000", msisdn=MSISDN, wallet="LSAJA",
         callback_url="http://127.0.0.1:9/unused", token=None, timeout=10):
    """One send in the provider's own wire format; ``amount`` is JSON text."""
    if code == "LSAJAH2H":
        token = token or lsaja_token(url)
        return post_json(url + "/lsajah2h/api/v1/transfer/fund",
                         f'{{"amount": {amount}, "msisdn": {json.dumps(msisdn)}, "notes": "cashback", '
                         f'"reference": {json.dumps(ref)}}}',
                         headers={"Authorization": f"Bearer {token}"}, timeout=timeout)
    if code == "GOPAIDH2H":
        return post_json(url + "/gopaidh2h/api/v1/provider/top-up",
                         f'{{"receipient": {json.dumps(msisdn)}, "add_balance": {amount}}}',
                         headers=GOPAID_KEY, timeout=timeout)
    if code == "JOSVOH2H":
        return post_json(url + "/josvoh2h/api/v2/accounts/transfer",
                         f'{{"phone_no": {json.dumps(msisdn)}, "amount": {amount}, '
                         f'"client_ref_code": {json.dumps(ref)}}}', headers=JOSVO_KEY, timeout=timeout)
    if code == "MTRANS":
        return post_json(url + "/mtrans/ewallet/v1/transfer",
                         f'{{"wallet": {json.dumps(wallet)}, "amount": {amount}, "account": {json.dumps(msisdn)}, '
                         f'"order_id": {json.dumps(ref)}}}', auth=MTRANS_AUTH, timeout=timeout)
    if code == "XENIT":
        return post_json(url + "/xenit/api/v1/e-wallet/top-up",
                         f'{{"wallet": {json.dumps(wallet)}, "beneficiary": {json.dumps(msisdn)}, "amount": {amount}, '
                         f'"ref_code": {json.dumps(ref)}, "callback_url": {json.dumps(callback_url)}}}',
                         headers=XENIT_KEY, timeout=timeout)
    raise AssertionError(code)


def inquire(url, code: str, ref: str):
    if code == "LSAJAH2H":
        return requests.get(f"{url}/lsajah2h/api/v1/transfer/fund/{ref}",
                            headers={"Authorization": f"Bearer {lsaja_token(url)}"})
    if code == "JOSVOH2H":
        return requests.get(f"{url}/josvoh2h/api/v2/accounts/transfer/{ref}", headers=JOSVO_KEY)
    if code == "MTRANS":
        return requests.get(f"{url}/mtrans/ewallet/v1/transfer/{ref}", auth=MTRANS_AUTH)
    if code == "XENIT":
        return requests.get(f"{url}/xenit/api/v1/e-wallet/top-up/{ref}", headers=XENIT_KEY)
    raise AssertionError(code)


WALLET_OF = {"LSAJAH2H": "LSAJA", "GOPAIDH2H": "GPAID", "JOSVOH2H": "JOSVO", "MTRANS": "LSAJA", "XENIT": "LSAJA"}
REF_FIELD = {"LSAJAH2H": "transactionID", "GOPAIDH2H": "ref_code", "JOSVOH2H": "transaction_id",
             "MTRANS": "transactionRef", "XENIT": "topup_ref"}
NOT_FOUND = {"LSAJAH2H": {"error": "not_found"}, "JOSVOH2H": {"code": "404", "notes": "not found"},
             "MTRANS": {"isSuccess": False, "statusCode": "404", "message": "not found"},
             "XENIT": {"error": "not_found"}}
REFUSAL = {
    "LSAJAH2H": {"error": "account_blocked", "message": "Destination account is blocked"},
    "GOPAIDH2H": {"error": "limit_exceeded", "message": "Daily top-up limit exceeded for this account"},
    "JOSVOH2H": {"code": "14", "notes": "Invalid account"},
    "MTRANS": {"isSuccess": False, "statusCode": "14", "transactionRef": None, "message": "Account not found"},
    "XENIT": {"topup_ref": None, "topup_status": "FAILED", "topup_message": "Wallet account is closed"},
}
ALL = tuple(WALLET_OF)
WITH_INQUIRY = ("LSAJAH2H", "JOSVOH2H", "MTRANS", "XENIT")


def credit_row(code, provider_ref, client_ref, at, amount="15000.00", wallet=None, msisdn=MSISDN):
    return {"provider": code, "provider_ref": provider_ref, "client_ref": client_ref,
            "wallet": wallet or WALLET_OF[code], "msisdn": msisdn, "amount": amount, "at": at}


# -- the process -------------------------------------------------------------------------------
def test_the_sandbox_imports_nothing_from_cezbek():
    code = ("import sys, wallets.sandbox.__main__, wallets.sandbox.server\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'django', 'rest_framework', 'cezbek', 'partners', 'cashback', 'loyalty', 'reports', 'celery'} "
            "or (m.startswith('wallets.') and not m.startswith('wallets.sandbox')))\n"
            "print(bad)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=clean_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_health(sandbox):
    response = requests.get(sandbox + "/_sandbox/health")
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Content-Length"] == str(len(response.content))


# -- credited answers, idempotency, inquiries --------------------------------------------------
def test_linksaja_credit_replay_and_inquiry(sandbox):
    token = lsaja_token(sandbox)
    first = send(sandbox, "LSAJAH2H", "LS-1", amount="10000.50", token=token)
    assert first.status_code == 200
    body = first.json()
    assert set(body) == {"transactionID", "transactionTime"}
    assert body["transactionID"].startswith("LSJ") and TIME_RE.match(body["transactionTime"])
    assert ledger(sandbox) == [credit_row("LSAJAH2H", body["transactionID"], "LS-1", body["transactionTime"],
                                          amount="10000.50")]

    replay = send(sandbox, "LSAJAH2H", "LS-1", amount="10000.50", token=token)
    assert (replay.status_code, replay.json()) == (200, body)
    assert len(ledger(sandbox)) == 1

    found = inquire(sandbox, "LSAJAH2H", "LS-1")
    assert found.status_code == 200
    assert as_json(found) == {"transactionID": body["transactionID"], "transactionTime": body["transactionTime"],
                              "reference": "LS-1", "amount": Decimal("10000.50"), "msisdn": MSISDN,
                              "status": "SUCCESS"}
    assert '"amount": 10000.50' in found.text  # a JSON number with 2 decimals
    missing = inquire(sandbox, "LSAJAH2H", "LS-404")
    assert (missing.status_code, missing.json()) == (404, {"error": "not_found"})


def test_linksaja_credentials_and_tokens(sandbox):
    bad_login = requests.post(sandbox + "/lsajah2h/api/v1/thirdparty/authorization",
                              json={**LSAJA_LOGIN, "password": "wrong"})
    assert (bad_login.status_code, bad_login.json()) == (401, {"error": "unauthorized"})
    no_header = post_json(sandbox + "/lsajah2h/api/v1/transfer/fund",
                          '{"amount": 1000, "msisdn": "628111222333", "reference": "LS-2"}')
    assert (no_header.status_code, no_header.json()) == (401, {"error": "unauthorized"})
    unknown = send(sandbox, "LSAJAH2H", "LS-2", token="not-a-token")
    assert (unknown.status_code, unknown.json()) == (401, {"error": "token_expired"})

    set_faults(sandbox, LSAJAH2H={"token_ttl_seconds": 0.5})
    token = lsaja_token(sandbox)
    assert send(sandbox, "LSAJAH2H", "LS-3", token=token).status_code == 200
    time.sleep(0.6)
    expired = send(sandbox, "LSAJAH2H", "LS-4", token=token)
    assert (expired.status_code, expired.json()) == (401, {"error": "token_expired"})
    assert [c["client_ref"] for c in ledger(sandbox)] == ["LS-3"]
    assert send(sandbox, "LSAJAH2H", "LS-4").status_code == 200  # a fresh token works
    assert [c["client_ref"] for c in ledger(sandbox)] == ["LS-3", "LS-4"]


def test_gopaid_has_no_idempotency_every_send_credits(sandbox):
    first = send(sandbox, "GOPAIDH2H", amount="20000")
    second = send(sandbox, "GOPAIDH2H", amount="20000")
    assert first.status_code == second.status_code == 200
    assert set(first.json()) == {"ref_code", "timestamp"}
    assert first.json()["ref_code"] != second.json()["ref_code"]
    assert ledger(sandbox) == [
        credit_row("GOPAIDH2H", first.json()["ref_code"], None, first.json()["timestamp"], amount="20000.00"),
        credit_row("GOPAIDH2H", second.json()["ref_code"], None, second.json()["timestamp"], amount="20000.00"),
    ]
    wrong_key = post_json(sandbox + "/gopaidh2h/api/v1/provider/top-up",
                          '{"receipient": "628111222333", "add_balance": 1}', headers={"X-Api-Key": "nope"})
    assert (wrong_key.status_code, wrong_key.json()) == (401, {"error": "unauthorized"})
    no_inquiry = requests.get(sandbox + "/gopaidh2h/api/v1/provider/top-up/" + first.json()["ref_code"],
                              headers=GOPAID_KEY)
    assert (no_inquiry.status_code, no_inquiry.json()) == (404, {"error": "not_found"})
    assert len(ledger(sandbox)) == 2


def test_josvo_credit_replay_and_inquiry(sandbox):
    first = send(sandbox, "JOSVOH2H", "JV-1", amount="7500.25")
    assert first.status_code == 200
    body = first.json()
    assert body["code"] == "00" and body["notes"] == "Success" and body["transaction_id"].startswith("JSV")
    assert set(body) == {"code", "notes", "transaction_id"}
    replay = send(sandbox, "JOSVOH2H", "JV-1", amount="7500.25")
    assert (replay.status_code, replay.json()) == (200, body)
    [credit] = ledger(sandbox)
    assert credit == credit_row("JOSVOH2H", body["transaction_id"], "JV-1", credit["at"], amount="7500.25")
    found = inquire(sandbox, "JOSVOH2H", "JV-1")
    assert (found.status_code, as_json(found)) == (200, {
        "code": "00", "notes": "Success", "client_ref_code": "JV-1", "transaction_id": body["transaction_id"],
        "amount": Decimal("7500.25"), "phone_no": MSISDN})
    missing = inquire(sandbox, "JOSVOH2H", "JV-404")
    assert (missing.status_code, missing.json()) == (404, {"code": "404", "notes": "not found"})
    wrong_key = requests.get(sandbox + "/josvoh2h/api/v2/accounts/transfer/JV-1", headers={"X-Api-Key": "x"})
    assert (wrong_key.status_code, wrong_key.json()) == (401, {"error": "unauthorized"})


def test_mtrans_credit_replay_and_inquiry(sandbox):
    first = send(sandbox, "MTRANS", "MT-1", amount="12345.60", wallet="GPAID")
    assert first.status_code == 200
    body = first.json()
    assert body == {"isSuccess": True, "statusCode": "00", "transactionRef": body["transactionRef"],
                    "message": "Success"}
    assert body["transactionRef"].startswith("MTR")
    replay = send(sandbox, "MTRANS", "MT-1", amount="12345.60", wallet="GPAID")
    assert (replay.status_code, replay.json()) == (200, body)
    [credit] = ledger(sandbox)
    assert credit == credit_row("MTRANS", body["transactionRef"], "MT-1", credit["at"], amount="12345.60",
                                wallet="GPAID")
    found = inquire(sandbox, "MTRANS", "MT-1")
    assert (found.status_code, as_json(found)) == (200, {
        "isSuccess": True, "statusCode": "00", "transactionRef": body["transactionRef"], "message": "Success",
        "order_id": "MT-1", "amount": Decimal("12345.60")})
    missing = inquire(sandbox, "MTRANS", "MT-404")
    assert (missing.status_code, missing.json()) == (404, {"isSuccess": False, "statusCode": "404",
                                                           "message": "not found"})
    wrong = requests.get(sandbox + "/mtrans/ewallet/v1/transfer/MT-1", auth=("cezbek", "wrong"))
    assert (wrong.status_code, wrong.json()) == (401, {"error": "unauthorized"})


def test_xenit_credit_replay_and_inquiry(sandbox):
    first = send(sandbox, "XENIT", "XN-1", amount="50000", wallet="JOSVO")
    assert first.status_code == 200
    body = first.json()
    assert body == {"topup_ref": body["topup_ref"], "topup_time": body["topup_time"], "topup_status": "SUCCESS",
                    "topup_message": "Top-up successful"}
    replay = send(sandbox, "XENIT", "XN-1", amount="50000", wallet="JOSVO")
    assert (replay.status_code, replay.json()) == (200, body)
    assert ledger(sandbox) == [credit_row("XENIT", body["topup_ref"], "XN-1", body["topup_time"],
                                          amount="50000.00", wallet="JOSVO")]
    found = inquire(sandbox, "XENIT", "XN-1")
    assert (found.status_code, as_json(found)) == (200, {
        **body, "ref_code": "XN-1", "amount": Decimal("50000.00"), "beneficiary": MSISDN, "wallet": "JOSVO"})
    missing = inquire(sandbox, "XENIT", "XN-404")
    assert (missing.status_code, missing.json()) == (404, {"error": "not_found"})


def test_concurrent_sends_of_one_reference_credit_once(sandbox):
    answers = []
    barrier = threading.Barrier(16)

    def one():
        barrier.wait()
        answers.append(send(sandbox, "JOSVOH2H", "JV-RACE"))

    threads = [threading.Thread(target=one) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.status_code for a in answers] == [200] * 16
    assert len({a.json()["transaction_id"] for a in answers}) == 1
    assert len(ledger(sandbox)) == 1


# -- validation --------------------------------------------------------------------------------
@pytest.mark.parametrize("amount, msisdn", [
    ("0", MSISDN), ("-5", MSISDN), ("0.00", MSISDN), ("1.234", MSISDN), ("1e-3", MSISDN), ('"1000"', MSISDN),
    ("true", MSISDN), ("null", MSISDN),
    ("1000", "08111222333"), ("1000", "62811"), ("1000", "6281112223334445"), ("1000", 628111222333),
])
def test_bad_amounts_and_msisdns_are_400_and_book_nothing(sandbox, amount, msisdn):
    for code in ALL:
        response = send(sandbox, code, f"BAD-{code}", amount=amount, msisdn=msisdn)
        assert response.status_code == 400, (code, response.text)
    assert ledger(sandbox) == []


def test_400_bodies_are_each_providers_refusal_shape(sandbox):
    shapes = {code: send(sandbox, code, "V-1", amount="1.234").json() for code in ALL}
    assert shapes["LSAJAH2H"] == {"error": "invalid_amount", "message": "amount must have at most 2 decimals"}
    assert shapes["GOPAIDH2H"] == {"error": "invalid_amount", "message": "add_balance must have at most 2 decimals"}
    assert shapes["JOSVOH2H"] == {"code": "13", "notes": "amount must have at most 2 decimals"}
    assert shapes["MTRANS"] == {"isSuccess": False, "statusCode": "13", "transactionRef": None,
                                "message": "amount must have at most 2 decimals"}
    assert TIME_RE.match(shapes["XENIT"].pop("topup_time"))
    assert shapes["XENIT"] == {"topup_ref": None, "topup_status": "FAILED",
                               "topup_message": "amount must have at most 2 decimals"}
    bad_wallet = send(sandbox, "MTRANS", "V-2", wallet="OVO")
    assert (bad_wallet.status_code, bad_wallet.json()["statusCode"]) == (400, "31")
    assert send(sandbox, "JOSVOH2H", "V-3", amount="1.230").status_code == 400  # as written: 3 decimals
    assert send(sandbox, "JOSVOH2H", "V-3", amount="1.2").status_code == 200
    assert send(sandbox, "JOSVOH2H", "V-4", amount="7").status_code == 200
    over = send(sandbox, "LSAJAH2H", "V-5", amount="1000000000.01")
    assert (over.status_code, over.json()) == (422, {"error": "limit_exceeded",
                                                     "message": "Amount exceeds the per-transfer limit"})
    assert send(sandbox, "LSAJAH2H", "V-5", amount="1000000000.00").status_code == 200
    assert [c["amount"] for c in ledger(sandbox)] == ["1.20", "7.00", "1000000000.00"]


# -- faults ------------------------------------------------------------------------------------
def test_refusals_are_422_book_nothing_and_free_the_reference(sandbox):
    set_faults(sandbox, **{code: {"refuse_rate": 1} for code in ALL})
    for code in ALL:
        response = send(sandbox, code, f"RF-{code}")
        body = response.json()
        if code == "XENIT":
            assert TIME_RE.match(body.pop("topup_time"))
        assert (response.status_code, body) == (422, REFUSAL[code])
    assert ledger(sandbox) == []
    for code in ("LSAJAH2H", "JOSVOH2H", "MTRANS"):
        assert inquire(sandbox, code, f"RF-{code}").status_code == 404
    xenit = as_json(inquire(sandbox, "XENIT", "RF-XENIT"))
    assert (xenit["topup_status"], xenit["topup_ref"], xenit["ref_code"]) == ("FAILED", None, "RF-XENIT")

    set_faults(sandbox, **{code: {"refuse_rate": 0} for code in ALL})
    for code in ALL:
        assert send(sandbox, code, f"RF-{code}").status_code == 200  # a refused reference is processed anew
    assert sorted(c["provider"] for c in ledger(sandbox)) == sorted(ALL)


def test_unavailable_is_503_before_processing_and_books_nothing(sandbox):
    set_faults(sandbox, **{code: {"unavailable_rate": 1} for code in ALL})
    for code in ALL:
        response = send(sandbox, code, f"UN-{code}")
        assert (response.status_code, response.json()) == (503, {"error": "unavailable"})
    before_auth = post_json(sandbox + "/josvoh2h/api/v2/accounts/transfer", "{}", headers={"X-Api-Key": "wrong"})
    assert (before_auth.status_code, before_auth.json()) == (503, {"error": "unavailable"})
    assert ledger(sandbox) == []
    assert inquire(sandbox, "JOSVOH2H", "UN-JOSVOH2H").status_code == 404  # inquiries get no faults


def test_unknown_after_crediting_is_500_and_the_books_show_the_credit(sandbox):
    set_faults(sandbox, JOSVOH2H={"unknown_rate": 1, "unknown_credit_rate": 1, "unknown_drop_rate": 0})
    response = send(sandbox, "JOSVOH2H", "UK-1")
    assert (response.status_code, response.json()) == (500, {"error": "internal_error"})
    [credit] = ledger(sandbox)
    found = inquire(sandbox, "JOSVOH2H", "UK-1")
    assert found.status_code == 200 and found.json()["transaction_id"] == credit["provider_ref"]
    replay = send(sandbox, "JOSVOH2H", "UK-1")  # the fault is still on: a replay is answered all the same
    assert (replay.status_code, replay.json()) == (200, {"code": "00", "notes": "Success",
                                                         "transaction_id": credit["provider_ref"]})
    assert len(ledger(sandbox)) == 1


def test_unknown_before_crediting_drops_the_connection_and_books_nothing(sandbox):
    set_faults(sandbox, MTRANS={"unknown_rate": 1, "unknown_credit_rate": 0, "unknown_drop_rate": 1})
    with pytest.raises(requests.ConnectionError):
        send(sandbox, "MTRANS", "UK-2")
    assert ledger(sandbox) == []
    assert inquire(sandbox, "MTRANS", "UK-2").status_code == 404
    set_faults(sandbox, MTRANS={"unknown_drop_rate": 0})
    response = send(sandbox, "MTRANS", "UK-2")
    assert (response.status_code, response.json()) == (500, {"error": "internal_error"})
    assert ledger(sandbox) == []


def test_gopaid_dropped_connection_after_crediting_shows_in_the_books(sandbox):
    set_faults(sandbox, GOPAIDH2H={"unknown_rate": 1, "unknown_credit_rate": 1, "unknown_drop_rate": 1})
    with pytest.raises(requests.ConnectionError):
        send(sandbox, "GOPAIDH2H", amount="3000")
    [credit] = ledger(sandbox)
    assert (credit["provider"], credit["client_ref"], credit["amount"]) == ("GOPAIDH2H", None, "3000.00")


def test_timeout_credited_client_gives_up_books_show_it(sandbox):
    set_faults(sandbox, LSAJAH2H={"timeout_rate": 1, "timeout_ms": 1500, "timeout_credit_rate": 1})
    token = lsaja_token(sandbox)
    with pytest.raises(requests.ReadTimeout):
        send(sandbox, "LSAJAH2H", "TO-1", token=token, timeout=0.3)
    [credit] = ledger(sandbox)
    assert (credit["client_ref"], credit["amount"]) == ("TO-1", "15000.00")
    found = inquire(sandbox, "LSAJAH2H", "TO-1")
    assert (found.status_code, found.json()["transactionID"]) == (200, credit["provider_ref"])


def test_timeout_not_credited_answers_504_late_and_books_nothing(sandbox):
    set_faults(sandbox, XENIT={"timeout_rate": 1, "timeout_ms": 300, "timeout_credit_rate": 0})
    started = time.monotonic()
    response = send(sandbox, "XENIT", "TO-2", timeout=5)
    assert time.monotonic() - started >= 0.3
    assert (response.status_code, response.json()) == (504, {"error": "gateway_timeout"})
    assert ledger(sandbox) == []
    assert inquire(sandbox, "XENIT", "TO-2").status_code == 404


def test_latency_applies_to_sends_and_inquiries(sandbox):
    set_faults(sandbox, JOSVOH2H={"latency_ms": 250})
    started = time.monotonic()
    assert send(sandbox, "JOSVOH2H", "LT-1").status_code == 200
    assert inquire(sandbox, "JOSVOH2H", "LT-1").status_code == 200
    assert time.monotonic() - started >= 0.5
    started = time.monotonic()
    assert send(sandbox, "GOPAIDH2H").status_code == 200
    assert time.monotonic() - started < 0.25


def test_faults_endpoint_merges_and_validates(sandbox):
    defaults = requests.get(sandbox + "/_sandbox/faults").json()
    assert defaults["XENIT"] == {
        "latency_ms": 0, "jitter_ms": 0, "refuse_rate": 0.0, "unavailable_rate": 0.0, "unknown_rate": 0.0,
        "timeout_rate": 0.0, "timeout_ms": 10000, "unknown_credit_rate": 0.5, "unknown_drop_rate": 0.5,
        "timeout_credit_rate": 0.5, "pending_rate": 0.0, "callback_delay_ms": 2000, "callback_drop_rate": 0.0,
        "pending_fail_rate": 0.0}
    assert defaults["LSAJAH2H"]["token_ttl_seconds"] == 900
    assert "pending_rate" not in defaults["MTRANS"]
    set_faults(sandbox, XENIT={"latency_ms": 5, "refuse_rate": 0.2})
    merged = set_faults(sandbox, xenit={"jitter_ms": 2})
    assert (merged["XENIT"]["latency_ms"], merged["XENIT"]["jitter_ms"], merged["XENIT"]["refuse_rate"]) == (5, 2, 0.2)
    for bad in ({"XENIT": {"bogus": 1}}, {"MTRANS": {"refuse_rate": 2}}, {"NOPE": {}},
                {"MTRANS": {"pending_rate": 0.5}}, {"XENIT": {"callback_delay_ms": 30000}},
                {"JOSVOH2H": {"latency_ms": "5"}}, [1]):
        response = requests.post(sandbox + "/_sandbox/faults", json=bad)
        assert response.status_code == 400 and response.json()["error"] == "invalid_faults", bad
    assert requests.get(sandbox + "/_sandbox/faults").json() == merged


# -- Xenit pending top-ups and callbacks -------------------------------------------------------
class Receiver:
    """A little HTTP server standing in for Cezbek's callback endpoint."""

    def __init__(self, statuses=(200,)):
        self.calls: list[tuple[dict, str, float]] = []
        self.cond = threading.Condition()
        receiver = self

        class Handle(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                with receiver.cond:
                    receiver.calls.append((dict(self.headers), body, time.monotonic()))
                    status = statuses[min(len(receiver.calls), len(statuses)) - 1]
                    receiver.cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handle)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/callbacks/xenit?source=sandbox"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 8.0):
        with self.cond:
            self.cond.wait_for(lambda: len(self.calls) >= count, timeout)
            return list(self.calls)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(statuses=(200,)):
        made.append(Receiver(statuses))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_xenit_pending_is_finished_by_a_callback_and_booked_then(sandbox, receiver):
    cb = receiver()
    set_faults(sandbox, XENIT={"pending_rate": 1, "callback_delay_ms": 300})
    sent_at = time.monotonic()
    response = send(sandbox, "XENIT", "PD-1", amount="25000", wallet="JOSVO", callback_url=cb.url)
    assert response.status_code == 200
    pending = response.json()
    assert pending == {"topup_ref": pending["topup_ref"], "topup_time": pending["topup_time"],
                       "topup_status": "PENDING", "topup_message": "Top-up is being processed"}
    assert ledger(sandbox) == []
    assert as_json(inquire(sandbox, "XENIT", "PD-1"))["topup_status"] == "PENDING"
    assert send(sandbox, "XENIT", "PD-1", amount="25000", wallet="JOSVO", callback_url=cb.url).json() == pending

    [(headers, body, arrived)] = cb.wait_for(1)
    assert arrived - sent_at >= 0.3
    assert headers["X-Callback-Token"] == "xenit-callback-token"
    assert headers["Content-Type"] == "application/json"
    callback = json.loads(body, parse_float=Decimal)
    assert callback == {"topup_ref": pending["topup_ref"], "topup_time": callback["topup_time"],
                        "topup_status": "SUCCESS", "topup_message": "Top-up successful", "ref_code": "PD-1",
                        "amount": Decimal("25000.00"), "beneficiary": MSISDN, "wallet": "JOSVO"}
    assert ledger(sandbox) == [credit_row("XENIT", pending["topup_ref"], "PD-1", callback["topup_time"],
                                          amount="25000.00", wallet="JOSVO")]
    assert as_json(inquire(sandbox, "XENIT", "PD-1")) == callback
    replay = send(sandbox, "XENIT", "PD-1", amount="25000", wallet="JOSVO", callback_url=cb.url)
    assert replay.json() == {k: callback[k] for k in ("topup_ref", "topup_time", "topup_status", "topup_message")}
    time.sleep(0.2)
    assert len(cb.calls) == 1 and len(ledger(sandbox)) == 1


def test_xenit_pending_that_fails_books_nothing_and_frees_the_reference(sandbox, receiver):
    cb = receiver()
    set_faults(sandbox, XENIT={"pending_rate": 1, "pending_fail_rate": 1, "callback_delay_ms": 100})
    pending = send(sandbox, "XENIT", "PD-2", callback_url=cb.url).json()
    [(headers, body, _)] = cb.wait_for(1)
    callback = json.loads(body)
    assert (callback["topup_status"], callback["topup_message"], callback["topup_ref"]) == (
        "FAILED", "Top-up failed", pending["topup_ref"])
    assert ledger(sandbox) == []
    assert as_json(inquire(sandbox, "XENIT", "PD-2"))["topup_status"] == "FAILED"
    set_faults(sandbox, XENIT={"pending_rate": 0})
    again = send(sandbox, "XENIT", "PD-2", callback_url=cb.url).json()
    assert again["topup_status"] == "SUCCESS" and again["topup_ref"] != pending["topup_ref"]
    assert [c["provider_ref"] for c in ledger(sandbox)] == [again["topup_ref"]]


def test_xenit_callback_is_retried_after_a_non_2xx(sandbox, receiver):
    cb = receiver(statuses=(500, 200))
    set_faults(sandbox, XENIT={"pending_rate": 1, "callback_delay_ms": 50})
    send(sandbox, "XENIT", "PD-3", callback_url=cb.url)
    calls = cb.wait_for(2)
    assert len(calls) == 2
    assert calls[0][1] == calls[1][1]
    assert calls[1][2] - calls[0][2] >= 0.9  # first retry after 1 s
    time.sleep(0.2)
    assert len(cb.calls) == 2 and len(ledger(sandbox)) == 1


def test_xenit_dropped_callback_still_completes_in_the_books(sandbox, receiver):
    cb = receiver()
    set_faults(sandbox, XENIT={"pending_rate": 1, "callback_delay_ms": 100, "callback_drop_rate": 1})
    pending = send(sandbox, "XENIT", "PD-4", callback_url=cb.url).json()
    deadline = time.monotonic() + 5
    while as_json(inquire(sandbox, "XENIT", "PD-4"))["topup_status"] == "PENDING" and time.monotonic() < deadline:
        time.sleep(0.05)
    finished = as_json(inquire(sandbox, "XENIT", "PD-4"))
    assert (finished["topup_status"], finished["topup_ref"]) == ("SUCCESS", pending["topup_ref"])
    assert [c["provider_ref"] for c in ledger(sandbox)] == [pending["topup_ref"]]
    time.sleep(0.3)
    assert cb.calls == []


# -- administration and settlement files -------------------------------------------------------
def test_stray_credits_ledger_filter_and_reset(sandbox):
    stray = requests.post(sandbox + "/_sandbox/ledger", json={
        "provider": "JOSVOH2H", "client_ref": "ST-1", "wallet": "JOSVO", "msisdn": MSISDN, "amount": 4200.5,
        "at": "2024-03-01T10:00:00Z"})
    assert stray.status_code == 201
    assert stray.json() == credit_row("JOSVOH2H", stray.json()["provider_ref"], "ST-1", "2024-03-01T10:00:00.000Z",
                                      amount="4200.50")
    gopaid = requests.post(sandbox + "/_sandbox/ledger", json={
        "provider": "GOPAIDH2H", "client_ref": None, "wallet": "GPAID", "msisdn": MSISDN, "amount": 100})
    assert gopaid.status_code == 201 and gopaid.json()["client_ref"] is None
    assert ledger(sandbox, "JOSVOH2H") == [stray.json()]
    assert ledger(sandbox) == [stray.json(), gopaid.json()]

    # The provider did credit ST-1: its inquiry finds it and a send of ST-1 is a replay.
    assert inquire(sandbox, "JOSVOH2H", "ST-1").json()["transaction_id"] == stray.json()["provider_ref"]
    assert send(sandbox, "JOSVOH2H", "ST-1").json()["transaction_id"] == stray.json()["provider_ref"]
    duplicate = requests.post(sandbox + "/_sandbox/ledger", json={
        "provider": "JOSVOH2H", "client_ref": "ST-1", "wallet": "JOSVO", "msisdn": MSISDN, "amount": 1})
    assert duplicate.status_code == 409
    for bad in ({"provider": "NOPE", "wallet": "JOSVO", "msisdn": MSISDN, "amount": 1},
                {"provider": "JOSVOH2H", "wallet": "GPAID", "msisdn": MSISDN, "amount": 1},
                {"provider": "GOPAIDH2H", "client_ref": "X", "wallet": "GPAID", "msisdn": MSISDN, "amount": 1},
                {"provider": "MTRANS", "wallet": "LSAJA", "msisdn": "0811", "amount": 1}):
        assert requests.post(sandbox + "/_sandbox/ledger", json=bad).status_code == 400, bad
    assert requests.get(sandbox + "/_sandbox/ledger", params={"provider": "NOPE"}).status_code == 400
    assert len(ledger(sandbox)) == 2

    set_faults(sandbox, MTRANS={"refuse_rate": 1})
    assert requests.post(sandbox + "/_sandbox/reset").json() == {"ok": True}
    assert ledger(sandbox) == []
    assert requests.get(sandbox + "/_sandbox/faults").json()["MTRANS"]["refuse_rate"] == 0.0
    assert inquire(sandbox, "JOSVOH2H", "ST-1").status_code == 404


def test_settlement_files_come_from_the_books(sandbox):
    def stray(code, client_ref, wallet, amount, at):
        response = requests.post(sandbox + "/_sandbox/ledger", json={
            "provider": code, "client_ref": client_ref, "wallet": wallet, "msisdn": MSISDN, "amount": amount,
            "at": at})
        assert response.status_code == 201
        return response.json()["provider_ref"]

    late = stray("XENIT", "XS-2", "GPAID", 300, "2024-03-01T23:59:59.999+00:00")
    early = stray("XENIT", None, "LSAJA", 1000.1, "2024-03-01T00:00:00Z")
    stray("XENIT", "XS-3", "JOSVO", 5, "2024-03-02T00:00:00Z")          # the next UTC day
    stray("XENIT", "XS-4", "JOSVO", 5, "2024-03-02T06:00:00+07:00")     # 2024-03-01T23:00Z
    live = send(sandbox, "XENIT", "XS-1", amount="777.70").json()

    response = requests.get(sandbox + "/xenit/settlements", params={"date": "2024-03-01"})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    rows = response.text.splitlines()
    assert rows[0] == "provider_ref,client_ref,wallet,msisdn,amount,fee,status,settled_at"
    assert rows[1] == f"{early},,LSAJA,{MSISDN},1000.10,1250.00,SUCCESS,2024-03-01T00:00:00.000Z"
    assert rows[2].endswith(",XS-4,JOSVO,628111222333,5.00,1250.00,SUCCESS,2024-03-01T23:00:00.000Z")
    assert rows[3] == f"{late},XS-2,GPAID,{MSISDN},300.00,1250.00,SUCCESS,2024-03-01T23:59:59.999Z"
    assert len(rows) == 4

    today = live["topup_time"][:10]
    today_rows = requests.get(sandbox + "/xenit/settlements", params={"date": today}).text.splitlines()
    assert today_rows[1:] == [f"{live['topup_ref']},XS-1,LSAJA,{MSISDN},777.70,1250.00,SUCCESS,{live['topup_time']}"]

    gopaid = send(sandbox, "GOPAIDH2H", amount="10").json()
    gopaid_rows = requests.get(sandbox + "/gopaidh2h/settlements", params={"date": gopaid["timestamp"][:10]})
    assert gopaid_rows.text.splitlines()[1:] == [
        f"{gopaid['ref_code']},,GPAID,{MSISDN},10.00,1000.00,SUCCESS,{gopaid['timestamp']}"]
    empty = requests.get(sandbox + "/mtrans/settlements", params={"date": "2024-03-01"})
    assert empty.text == "provider_ref,client_ref,wallet,msisdn,amount,fee,status,settled_at\n"
    for bad in ("2024-3-1", "2024-02-30", ""):
        answer = requests.get(sandbox + "/xenit/settlements", params={"date": bad})
        assert (answer.status_code, answer.json()["error"]) == (400, "invalid_date"), bad


# -- start-up options, persistence, shutdown ---------------------------------------------------
def test_startup_faults_env_port_db_file_and_restart(tmp_path):
    db = tmp_path / "books.sqlite3"
    port = free_port()
    env = clean_env(SANDBOX_PORT=str(port), SANDBOX_SEED="3",
                    SANDBOX_FAULTS='{"GOPAIDH2H": {"latency_ms": 1, "refuse_rate": 0.5}, "JOSVOH2H": {"refuse_rate": 0.25}}')
    proc, url = start(["--db", str(db), "--faults", '{"GOPAIDH2H": {"refuse_rate": 1}}'], tmp_path / "a.log",
                      env=env, port=port)
    try:
        faults = requests.get(url + "/_sandbox/faults").json()
        assert (faults["GOPAIDH2H"]["latency_ms"], faults["GOPAIDH2H"]["refuse_rate"],
                faults["JOSVOH2H"]["refuse_rate"]) == (1, 1.0, 0.25)
        assert send(url, "GOPAIDH2H").status_code == 422
        assert requests.post(url + "/_sandbox/ledger", json={
            "provider": "MTRANS", "client_ref": "P-1", "wallet": "JOSVO", "msisdn": MSISDN,
            "amount": 9}).status_code == 201
        set_faults(url, XENIT={"pending_rate": 1, "callback_delay_ms": 29000})
        assert send(url, "XENIT", "P-2").json()["topup_status"] == "PENDING"
    finally:
        assert stop(proc) == 0
    assert "sandbox shutting down" in (tmp_path / "a.log").read_text()

    # The pending top-up of the first run is finished by the second, with the second's faults.
    proc, url = start(["--db", str(db), "--faults", '{"XENIT": {"callback_delay_ms": 100, "callback_drop_rate": 1}}'],
                      tmp_path / "b.log", port=port)
    try:
        credit = ledger(url)[0]
        assert (credit["provider"], credit["client_ref"], credit["amount"]) == ("MTRANS", "P-1", "9.00")
        assert inquire(url, "MTRANS", "P-1").json()["transactionRef"] == credit["provider_ref"]
        assert requests.get(url + "/_sandbox/faults").json()["GOPAIDH2H"]["refuse_rate"] == 0.0
        deadline = time.monotonic() + 5
        while inquire(url, "XENIT", "P-2").json()["topup_status"] == "PENDING" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert inquire(url, "XENIT", "P-2").json()["topup_status"] == "SUCCESS"
        assert [c["client_ref"] for c in ledger(url)] == ["P-1", "P-2"]
    finally:
        assert stop(proc) == 0


def test_bad_startup_faults_are_refused(tmp_path):
    out = subprocess.run([sys.executable, "-m", "wallets.sandbox", "--port", "0", "--faults", '{"XENIT": {"x": 1}}'],
                         cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=20)
    assert out.returncode == 2
    assert "unknown fault key 'x'" in out.stderr


def test_log_has_one_line_per_request_and_no_credentials(sandbox, sandbox_log):
    requests.get(sandbox + "/_sandbox/health?probe=1")
    send(sandbox, "LSAJAH2H", "LOG-1")
    time.sleep(0.1)
    text = sandbox_log.read_text()
    assert re.search(r"^\S+ GET /_sandbox/health 200 \d+\.\dms$", text, re.M)
    assert re.search(r"^\S+ POST /lsajah2h/api/v1/transfer/fund 200 \d+\.\dms$", text, re.M)
    for secret in SECRETS:
        assert secret not in text
    assert "Bearer" not in text and "probe" not in text
