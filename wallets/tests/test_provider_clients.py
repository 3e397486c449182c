"""Provider clients against mocked HTTP (``responses``); no database, no Django at import."""

from __future__ import annotations

import base64
import datetime
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from http.client import RemoteDisconnected
from typing import Any

import pytest
import requests
import responses
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from wallets.providers import (
    PROVIDER_CODES,
    CallbackRejected,
    Credited,
    GoPaidClient,
    JosvoClient,
    LinkSajaClient,
    MtransClient,
    Pending,
    ProviderClient,
    Refused,
    TransferNotFound,
    Unavailable,
    Unknown,
    XenitClient,
)

BASE = "http://provider.test/code"
CONNECT_TIMEOUT = 1.5
READ_TIMEOUT = 4.0
REFERENCE = "PO-000123-1"
MSISDN = "6281234567890"
AMOUNT = Decimal("10000.50")
CALLBACK_URL = "http://cezbek.test/api/v1/callbacks/xenit"

LSAJA_TOKEN = "lsaja-token-1"
LSAJA_PASSWORD = "lsaja-password"
GOPAID_KEY = "gopaid-key"
JOSVO_KEY = "josvo-key"
MTRANS_PASSWORD = "mtrans-password"
XENIT_KEY = "xenit-key"
XENIT_CALLBACK_TOKEN = "xenit-callback-token"
SECRETS = (LSAJA_TOKEN, LSAJA_PASSWORD, GOPAID_KEY, JOSVO_KEY, MTRANS_PASSWORD, XENIT_KEY, XENIT_CALLBACK_TOKEN)


class DictTokenStore:
    """The token store interface (Django's cache) over a dict, recording timeouts."""

    def __init__(self, initial: dict[str, Any] | None = None) -> None:
        self.data: dict[str, Any] = dict(initial or {})
        self.timeouts: dict[str, float | None] = {}

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def set(self, key: str, value: Any, timeout: float | None = None) -> None:
        self.data[key] = value
        self.timeouts[key] = timeout


def make_lsaja(store: DictTokenStore | None = None) -> LinkSajaClient:
    return LinkSajaClient(
        base_url=BASE,
        email="cezbek@sandbox.local",
        password=LSAJA_PASSWORD,
        token_store=store if store is not None else DictTokenStore({LinkSajaClient.token_key: LSAJA_TOKEN}),
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
    )


def make_gopaid() -> GoPaidClient:
    return GoPaidClient(
        base_url=BASE, api_key=GOPAID_KEY, connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT
    )


def make_josvo() -> JosvoClient:
    return JosvoClient(
        base_url=BASE, api_key=JOSVO_KEY, connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT
    )


def make_mtrans() -> MtransClient:
    return MtransClient(
        base_url=BASE,
        username="cezbek",
        password=MTRANS_PASSWORD,
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
    )


def make_xenit() -> XenitClient:
    return XenitClient(
        base_url=BASE,
        api_key=XENIT_KEY,
        callback_token=XENIT_CALLBACK_TOKEN,
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
    )


@dataclass(frozen=True)
class Spec:
    """One provider's wire, as docs/providers.md describes it."""

    code: str
    make: Callable[[], ProviderClient]
    wallet: str
    send_path: str
    inquiry_path: str | None
    expected_body: dict[str, Any]
    auth_header: tuple[str, str]
    credited: dict[str, Any]
    provider_ref: str
    refusal: dict[str, Any]
    refusal_reason: str
    inquiry_credited: dict[str, Any] | None
    not_found: dict[str, Any] | None


MTRANS_BASIC = "Basic " + base64.b64encode(f"cezbek:{MTRANS_PASSWORD}".encode()).decode()

SPECS = [
    Spec(
        code="LSAJAH2H",
        make=make_lsaja,
        wallet="LSAJA",
        send_path="/api/v1/transfer/fund",
        inquiry_path=f"/api/v1/transfer/fund/{REFERENCE}",
        expected_body={"amount": AMOUNT, "msisdn": MSISDN, "notes": "cashback", "reference": REFERENCE},
        auth_header=("Authorization", f"Bearer {LSAJA_TOKEN}"),
        credited={"transactionID": "LS-77", "transactionTime": "2025-01-02T03:04:05Z"},
        provider_ref="LS-77",
        refusal={"error": "account_not_found", "message": "no such account"},
        refusal_reason="account_not_found",
        inquiry_credited={
            "transactionID": "LS-77",
            "transactionTime": "2025-01-02T03:04:05Z",
            "reference": REFERENCE,
            "amount": 10000.50,
            "msisdn": MSISDN,
            "status": "SUCCESS",
        },
        not_found={"error": "not_found"},
    ),
    Spec(
        code="GOPAIDH2H",
        make=make_gopaid,
        wallet="GPAID",
        send_path="/api/v1/provider/top-up",
        inquiry_path=None,
        expected_body={"receipient": MSISDN, "add_balance": AMOUNT},
        auth_header=("X-Api-Key", GOPAID_KEY),
        credited={"ref_code": "GP-9", "timestamp": "2025-01-02T03:04:05Z"},
        provider_ref="GP-9",
        refusal={"error": "limit_exceeded", "message": "monthly limit"},
        refusal_reason="limit_exceeded",
        inquiry_credited=None,
        not_found=None,
    ),
    Spec(
        code="JOSVOH2H",
        make=make_josvo,
        wallet="JOSVO",
        send_path="/api/v2/accounts/transfer",
        inquiry_path=f"/api/v2/accounts/transfer/{REFERENCE}",
        expected_body={"phone_no": MSISDN, "amount": AMOUNT, "client_ref_code": REFERENCE},
        auth_header=("X-Api-Key", JOSVO_KEY),
        credited={"code": "00", "notes": "ok", "transaction_id": "JV-5"},
        provider_ref="JV-5",
        refusal={"code": "14", "notes": "wallet closed"},
        refusal_reason="code 14: wallet closed",
        inquiry_credited={
            "code": "00",
            "notes": "ok",
            "client_ref_code": REFERENCE,
            "transaction_id": "JV-5",
            "amount": 10000.50,
            "phone_no": MSISDN,
        },
        not_found={"code": "404", "notes": "not found"},
    ),
    Spec(
        code="MTRANS",
        make=make_mtrans,
        wallet="GPAID",
        send_path="/ewallet/v1/transfer",
        inquiry_path=f"/ewallet/v1/transfer/{REFERENCE}",
        expected_body={"wallet": "GPAID", "amount": AMOUNT, "account": MSISDN, "order_id": REFERENCE},
        auth_header=("Authorization", MTRANS_BASIC),
        credited={"isSuccess": True, "statusCode": "00", "transactionRef": "MT-3", "message": "ok"},
        provider_ref="MT-3",
        refusal={"isSuccess": False, "statusCode": "51", "transactionRef": None, "message": "limit"},
        refusal_reason="status 51: limit",
        inquiry_credited={
            "isSuccess": True,
            "statusCode": "00",
            "transactionRef": "MT-3",
            "message": "ok",
            "order_id": REFERENCE,
            "amount": 10000.50,
        },
        not_found={"isSuccess": False, "statusCode": "404", "message": "not found"},
    ),
    Spec(
        code="XENIT",
        make=make_xenit,
        wallet="JOSVO",
        send_path="/api/v1/e-wallet/top-up",
        inquiry_path=f"/api/v1/e-wallet/top-up/{REFERENCE}",
        expected_body={
            "wallet": "JOSVO",
            "beneficiary": MSISDN,
            "amount": AMOUNT,
            "ref_code": REFERENCE,
            "callback_url": CALLBACK_URL,
        },
        auth_header=("X-Api-Key", XENIT_KEY),
        credited={
            "topup_ref": "XN-1",
            "topup_time": "2025-01-02T03:04:05Z",
            "topup_status": "SUCCESS",
            "topup_message": "ok",
        },
        provider_ref="XN-1",
        refusal={
            "topup_ref": None,
            "topup_time": "2025-01-02T03:04:05Z",
            "topup_status": "FAILED",
            "topup_message": "wallet closed",
        },
        refusal_reason="failed: wallet closed",
        inquiry_credited={
            "topup_ref": "XN-1",
            "topup_time": "2025-01-02T03:04:05Z",
            "topup_status": "SUCCESS",
            "topup_message": "ok",
            "ref_code": REFERENCE,
            "amount": 10000.50,
        },
        not_found={"error": "not_found"},
    ),
]
INQUIRY_SPECS = [spec for spec in SPECS if spec.inquiry_path is not None]


def ids(spec: Spec) -> str:
    return spec.code


def send(client: ProviderClient, spec: Spec, amount: Decimal = AMOUNT) -> Credited | Pending:
    return client.send(
        reference=REFERENCE,
        wallet=spec.wallet,
        msisdn=MSISDN,
        amount=amount,
        notes="cashback",
        callback_url=CALLBACK_URL,
    )


def body_of(call: Any) -> dict[str, Any]:
    return json.loads(call.request.body, parse_float=Decimal)


def assert_no_secret(error: Exception) -> None:
    text = f"{error} {error.args!r}"
    for secret in SECRETS:
        assert secret not in text


@pytest.fixture
def http() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


# --- Sends: the outcome classes, for every provider ------------------------------------------
@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_send_credited_sends_exact_body_and_credentials(http: responses.RequestsMock, spec: Spec) -> None:
    # given
    http.post(BASE + spec.send_path, json=spec.credited)
    client = spec.make()
    # when
    outcome = send(client, spec)
    # then
    assert outcome == Credited(provider_ref=spec.provider_ref, http_status=200, raw=spec.credited)
    assert len(http.calls) == 1
    request = http.calls[0].request
    assert body_of(http.calls[0]) == spec.expected_body
    assert list(body_of(http.calls[0])) == list(spec.expected_body)  # the contract's key order
    assert b'"amount":10000.50' in request.body or b'"add_balance":10000.50' in request.body
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers[spec.auth_header[0]] == spec.auth_header[1]
    assert request.req_kwargs["timeout"] == (CONNECT_TIMEOUT, READ_TIMEOUT)


@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_send_whole_amount_travels_with_two_decimals(http: responses.RequestsMock, spec: Spec) -> None:
    http.post(BASE + spec.send_path, json=spec.credited)

    send(spec.make(), spec, amount=Decimal("25000"))

    assert b":25000.00," in http.calls[0].request.body or b":25000.00}" in http.calls[0].request.body
    assert Decimal("25000.00") in body_of(http.calls[0]).values()


@pytest.mark.parametrize("status", [400, 422])
@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_send_documented_refusal_is_refused(http: responses.RequestsMock, spec: Spec, status: int) -> None:
    http.post(BASE + spec.send_path, json=spec.refusal, status=status)

    with pytest.raises(Refused) as caught:
        send(spec.make(), spec)

    error = caught.value
    assert type(error) is Refused
    assert (error.provider, error.http_status, error.reason) == (spec.code, status, spec.refusal_reason)
    assert error.raw == spec.refusal
    assert_no_secret(error)


@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_send_422_without_documented_body_is_unknown(http: responses.RequestsMock, spec: Spec) -> None:
    http.post(BASE + spec.send_path, body="<html>Unprocessable</html>", status=422)

    with pytest.raises(Unknown) as caught:
        send(spec.make(), spec)

    assert caught.value.http_status == 422


@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_send_503_unavailable_is_unavailable(http: responses.RequestsMock, spec: Spec) -> None:
    http.post(BASE + spec.send_path, json={"error": "unavailable"}, status=503)

    with pytest.raises(Unavailable) as caught:
        send(spec.make(), spec)

    assert (caught.value.provider, caught.value.http_status, caught.value.reason) == (
        spec.code,
        503,
        "unavailable",
    )
    assert isinstance(caught.value, Refused)  # nothing moved


@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_send_503_without_documented_body_is_unknown(http: responses.RequestsMock, spec: Spec) -> None:
    http.post(BASE + spec.send_path, body="Service Unavailable", status=503)

    with pytest.raises(Unknown) as caught:
        send(spec.make(), spec)

    assert caught.value.http_status == 503


@pytest.mark.parametrize("status", [500, 502, 504])
@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_send_5xx_is_unknown(http: responses.RequestsMock, spec: Spec, status: int) -> None:
    http.post(BASE + spec.send_path, json={"error": "internal"}, status=status)

    with pytest.raises(Unknown) as caught:
        send(spec.make(), spec)

    assert (caught.value.provider, caught.value.http_status) == (spec.code, status)
    assert caught.value.reason == "unexpected answer to a transfer"
    assert str(caught.value) == f"{spec.code}: unexpected answer to a transfer (http {status})"


DROPPED_AFTER_SEND = [
    pytest.param(
        requests.ConnectionError(
            ProtocolError("Connection aborted.", RemoteDisconnected("Remote end closed connection"))
        ),
        "connection dropped after sending",
        id="remote-disconnected",
    ),
    pytest.param(requests.ConnectionError("connection reset"), "connection dropped after sending", id="bare"),
    pytest.param(
        requests.exceptions.ChunkedEncodingError("incomplete read"),
        "connection dropped while reading the answer",
        id="chunked",
    ),
    pytest.param(requests.ReadTimeout("read timed out"), "read timeout", id="read-timeout"),
    pytest.param(requests.exceptions.SSLError("bad record mac"), "connection dropped after sending", id="ssl"),
]

NOTHING_SENT = [
    pytest.param(requests.ConnectTimeout("connect timed out"), "connect timeout", id="connect-timeout"),
    pytest.param(
        requests.ConnectionError(
            MaxRetryError(None, BASE, NewConnectionError(None, "Connection refused"))  # type: ignore[arg-type]
        ),
        "connection failed before sending",
        id="connection-refused",
    ),
]


@pytest.mark.parametrize("error,reason", DROPPED_AFTER_SEND)
@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_send_transport_failure_after_sending_is_unknown(
    http: responses.RequestsMock, spec: Spec, error: Exception, reason: str
) -> None:
    http.post(BASE + spec.send_path, body=error)

    with pytest.raises(Unknown) as caught:
        send(spec.make(), spec)

    assert (caught.value.provider, caught.value.http_status, caught.value.reason) == (spec.code, None, reason)


@pytest.mark.parametrize("error,reason", NOTHING_SENT)
@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_send_transport_failure_while_connecting_is_unavailable(
    http: responses.RequestsMock, spec: Spec, error: Exception, reason: str
) -> None:
    http.post(BASE + spec.send_path, body=error)

    with pytest.raises(Unavailable) as caught:
        send(spec.make(), spec)

    assert (caught.value.provider, caught.value.http_status, caught.value.reason) == (spec.code, None, reason)


@pytest.mark.parametrize(
    "body,content_type",
    [
        ("<html>OK</html>", "text/html"),
        ("[]", "application/json"),
        ('{"amount": NaN}', "application/json"),
        ("", "application/json"),
    ],
)
@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_send_unparseable_2xx_is_unknown(
    http: responses.RequestsMock, spec: Spec, body: str, content_type: str
) -> None:
    http.post(BASE + spec.send_path, body=body, status=200, content_type=content_type)

    with pytest.raises(Unknown) as caught:
        send(spec.make(), spec)

    assert (caught.value.http_status, caught.value.reason) == (200, "unparseable 2xx answer")


@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_send_2xx_without_success_marker_is_unknown(http: responses.RequestsMock, spec: Spec) -> None:
    http.post(BASE + spec.send_path, json={"message": "accepted"}, status=200)

    with pytest.raises(Unknown) as caught:
        send(spec.make(), spec)

    assert (caught.value.http_status, caught.value.reason) == (200, "2xx answer without the success marker")


@pytest.mark.parametrize("spec", [s for s in SPECS if s.code != "LSAJAH2H"], ids=ids)
def test_send_401_is_unavailable(http: responses.RequestsMock, spec: Spec) -> None:
    http.post(BASE + spec.send_path, json={"error": "unauthorized"}, status=401)

    with pytest.raises(Unavailable) as caught:
        send(spec.make(), spec)

    assert (caught.value.http_status, caught.value.reason) == (401, "unauthorized")
    assert_no_secret(caught.value)


@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_send_redirect_is_not_followed_and_is_unknown(http: responses.RequestsMock, spec: Spec) -> None:
    http.post(BASE + spec.send_path, status=302, headers={"Location": "http://elsewhere.test/"})

    with pytest.raises(Unknown) as caught:
        send(spec.make(), spec)

    assert caught.value.http_status == 302
    assert len(http.calls) == 1


@pytest.mark.parametrize(
    "amount,error",
    [
        (Decimal("10.005"), ValueError),
        (Decimal("0"), ValueError),
        (Decimal("-5.00"), ValueError),
        (Decimal("NaN"), ValueError),
        (10.5, TypeError),
    ],
)
@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_send_rejects_bad_amount_before_sending(
    http: responses.RequestsMock, spec: Spec, amount: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        send(spec.make(), spec, amount=amount)

    assert len(http.calls) == 0


@pytest.mark.parametrize(
    "make,wallet",
    [(make_lsaja, "GPAID"), (make_gopaid, "LSAJA"), (make_josvo, "GPAID"), (make_mtrans, "OVO"), (make_xenit, "OVO")],
)
def test_send_rejects_wallet_the_provider_does_not_serve(
    http: responses.RequestsMock, make: Callable[[], ProviderClient], wallet: str
) -> None:
    with pytest.raises(ValueError):
        make().send(reference=REFERENCE, wallet=wallet, msisdn=MSISDN, amount=AMOUNT)

    assert len(http.calls) == 0


# --- Inquiries ---------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", INQUIRY_SPECS, ids=ids)
def test_inquiry_found_is_credited(http: responses.RequestsMock, spec: Spec) -> None:
    assert spec.inquiry_path is not None and spec.inquiry_credited is not None
    http.get(BASE + spec.inquiry_path, json=spec.inquiry_credited)

    outcome = spec.make().inquire(reference=REFERENCE)

    assert outcome == Credited(provider_ref=spec.provider_ref, http_status=200, raw=outcome.raw)
    assert outcome.raw["amount"] == Decimal("10000.50")
    assert isinstance(outcome.raw["amount"], Decimal)
    request = http.calls[0].request
    assert request.headers[spec.auth_header[0]] == spec.auth_header[1]
    assert request.body is None
    assert request.req_kwargs["timeout"] == (CONNECT_TIMEOUT, READ_TIMEOUT)


@pytest.mark.parametrize("spec", INQUIRY_SPECS, ids=ids)
def test_inquiry_404_documented_is_transfer_not_found(http: responses.RequestsMock, spec: Spec) -> None:
    assert spec.inquiry_path is not None
    http.get(BASE + spec.inquiry_path, json=spec.not_found, status=404)

    with pytest.raises(TransferNotFound) as caught:
        spec.make().inquire(reference=REFERENCE)

    assert (caught.value.provider, caught.value.http_status) == (spec.code, 404)


@pytest.mark.parametrize("spec", INQUIRY_SPECS, ids=ids)
def test_inquiry_404_from_elsewhere_is_unknown(http: responses.RequestsMock, spec: Spec) -> None:
    # A proxy's 404 must never read as "safe to send again".
    assert spec.inquiry_path is not None
    http.get(BASE + spec.inquiry_path, body="<html>Not Found</html>", status=404)

    with pytest.raises(Unknown):
        spec.make().inquire(reference=REFERENCE)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"json": {"error": "internal"}, "status": 500}, id="500"),
        pytest.param({"json": {"error": "unavailable"}, "status": 503}, id="503"),
        pytest.param({"json": {"error": "bad"}, "status": 422}, id="422"),
        pytest.param({"body": "not json", "status": 200}, id="unparseable-200"),
        pytest.param({"body": requests.ConnectTimeout("connect timed out")}, id="connect-timeout"),
        pytest.param({"body": requests.ReadTimeout("read timed out")}, id="read-timeout"),
    ],
)
@pytest.mark.parametrize("spec", INQUIRY_SPECS, ids=ids)
def test_inquiry_that_fails_is_unknown_never_refused(
    http: responses.RequestsMock, spec: Spec, kwargs: dict[str, Any]
) -> None:
    # For an inquiry, Refused would mean "the transfer failed": a failed question is Unknown.
    assert spec.inquiry_path is not None
    http.get(BASE + spec.inquiry_path, **kwargs)

    with pytest.raises(Unknown) as caught:
        spec.make().inquire(reference=REFERENCE)

    assert caught.value.provider == spec.code


def test_inquiry_quotes_the_reference_in_the_path(http: responses.RequestsMock) -> None:
    http.get(BASE + "/api/v2/accounts/transfer/A%2FB%20C", json={"code": "00", "transaction_id": "JV-5"})

    outcome = make_josvo().inquire(reference="A/B C")

    assert outcome.provider_ref == "JV-5"


# --- Settlement files ------------------------------------------------------------------------
SETTLEMENT_CSV = (
    "provider_ref,client_ref,wallet,msisdn,amount,fee,status,settled_at\n"
    "XN-1,PO-000123-1,JOSVO,6281234567890,10000.50,1500.00,SUCCESS,2025-01-02T03:04:05Z\n"
)


@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_fetch_settlement_returns_csv_text(http: responses.RequestsMock, spec: Spec) -> None:
    http.get(
        BASE + "/settlements",
        body=("\ufeff" + SETTLEMENT_CSV).encode(),
        content_type="text/csv",
        match=[responses.matchers.query_param_matcher({"date": "2025-01-02"})],
    )

    text = spec.make().fetch_settlement(date=datetime.date(2025, 1, 2))

    assert text == SETTLEMENT_CSV
    assert http.calls[0].request.headers[spec.auth_header[0]] == spec.auth_header[1]


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"body": "oops", "status": 500}, id="500"),
        pytest.param({"body": "no file", "status": 404}, id="404"),
        pytest.param({"body": requests.ConnectTimeout("connect timed out")}, id="connect-timeout"),
        pytest.param({"body": b"\xff\xfe\xfa", "status": 200}, id="not-utf8"),
    ],
)
def test_fetch_settlement_failure_is_unknown(http: responses.RequestsMock, kwargs: dict[str, Any]) -> None:
    http.get(BASE + "/settlements", **kwargs)

    with pytest.raises(Unknown):
        make_mtrans().fetch_settlement(date=datetime.date(2025, 1, 2))


# --- LinkSaja: the bearer token --------------------------------------------------------------
LSAJA_AUTH = BASE + "/api/v1/thirdparty/authorization"
LSAJA_SEND = BASE + "/api/v1/transfer/fund"
LSAJA_SPEC = SPECS[0]


def auth_calls(http: responses.RequestsMock) -> list[Any]:
    return [call for call in http.calls if call.request.url == LSAJA_AUTH]


def test_lsaja_token_fetched_once_and_cached_across_sends(http: responses.RequestsMock) -> None:
    # given an empty token store
    store = DictTokenStore()
    http.post(LSAJA_AUTH, json={"token": LSAJA_TOKEN, "thirdPartyName": "Cezbek"})
    http.post(LSAJA_SEND, json=LSAJA_SPEC.credited)
    client = make_lsaja(store)
    # when
    first = send(client, LSAJA_SPEC)
    second = send(client, LSAJA_SPEC)
    # then
    assert first.provider_ref == second.provider_ref == "LS-77"
    assert len(auth_calls(http)) == 1
    assert body_of(auth_calls(http)[0]) == {"email": "cezbek@sandbox.local", "password": LSAJA_PASSWORD}
    assert [call.request.url for call in http.calls] == [LSAJA_AUTH, LSAJA_SEND, LSAJA_SEND]
    assert all(call.request.headers["Authorization"] == f"Bearer {LSAJA_TOKEN}" for call in http.calls[1:])
    assert store.data == {"provider:LSAJAH2H:token": LSAJA_TOKEN}
    assert store.timeouts == {"provider:LSAJAH2H:token": 840}


def test_lsaja_token_shared_through_the_store_between_clients(http: responses.RequestsMock) -> None:
    store = DictTokenStore()
    http.post(LSAJA_AUTH, json={"token": LSAJA_TOKEN, "thirdPartyName": "Cezbek"})
    http.post(LSAJA_SEND, json=LSAJA_SPEC.credited)

    send(make_lsaja(store), LSAJA_SPEC)
    send(make_lsaja(store), LSAJA_SPEC)

    assert len(auth_calls(http)) == 1


def test_lsaja_401_renews_token_once_then_succeeds(http: responses.RequestsMock) -> None:
    # given a cached token that LinkSaja no longer accepts
    store = DictTokenStore({"provider:LSAJAH2H:token": "stale-token"})
    http.post(LSAJA_AUTH, json={"token": LSAJA_TOKEN, "thirdPartyName": "Cezbek"})
    http.post(LSAJA_SEND, json={"error": "token_expired"}, status=401)
    http.post(LSAJA_SEND, json=LSAJA_SPEC.credited)
    # when
    outcome = send(make_lsaja(store), LSAJA_SPEC)
    # then
    assert outcome == Credited(provider_ref="LS-77", http_status=200, raw=LSAJA_SPEC.credited)
    assert [call.request.url for call in http.calls] == [LSAJA_SEND, LSAJA_AUTH, LSAJA_SEND]
    assert http.calls[0].request.headers["Authorization"] == "Bearer stale-token"
    assert http.calls[2].request.headers["Authorization"] == f"Bearer {LSAJA_TOKEN}"
    assert body_of(http.calls[0]) == body_of(http.calls[2]) == LSAJA_SPEC.expected_body
    assert store.data["provider:LSAJAH2H:token"] == LSAJA_TOKEN


def test_lsaja_two_401s_in_a_row_is_unavailable_after_two_auth_calls(http: responses.RequestsMock) -> None:
    store = DictTokenStore()
    http.post(LSAJA_AUTH, json={"token": LSAJA_TOKEN, "thirdPartyName": "Cezbek"})
    http.post(LSAJA_SEND, json={"error": "token_expired"}, status=401)

    with pytest.raises(Unavailable) as caught:
        send(make_lsaja(store), LSAJA_SPEC)

    assert (caught.value.http_status, caught.value.reason) == (401, "unauthorized")
    assert len(auth_calls(http)) == 2
    assert [call.request.url for call in http.calls] == [LSAJA_AUTH, LSAJA_SEND, LSAJA_AUTH, LSAJA_SEND]
    assert_no_secret(caught.value)


def test_lsaja_inquiry_renews_token_on_401(http: responses.RequestsMock) -> None:
    store = DictTokenStore({"provider:LSAJAH2H:token": "stale-token"})
    inquiry_url = BASE + f"/api/v1/transfer/fund/{REFERENCE}"
    http.post(LSAJA_AUTH, json={"token": LSAJA_TOKEN, "thirdPartyName": "Cezbek"})
    http.get(inquiry_url, json={"error": "token_expired"}, status=401)
    http.get(inquiry_url, json=LSAJA_SPEC.inquiry_credited)

    outcome = make_lsaja(store).inquire(reference=REFERENCE)

    assert outcome.provider_ref == "LS-77"
    assert len(auth_calls(http)) == 1


def test_lsaja_inquiry_two_401s_is_unknown(http: responses.RequestsMock) -> None:
    inquiry_url = BASE + f"/api/v1/transfer/fund/{REFERENCE}"
    http.post(LSAJA_AUTH, json={"token": LSAJA_TOKEN, "thirdPartyName": "Cezbek"})
    http.get(inquiry_url, json={"error": "token_expired"}, status=401)

    with pytest.raises(Unknown) as caught:
        make_lsaja(DictTokenStore()).inquire(reference=REFERENCE)

    assert caught.value.http_status == 401
    assert len(auth_calls(http)) == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"json": {"error": "unauthorized"}, "status": 401}, id="wrong-password"),
        pytest.param({"json": {"error": "internal"}, "status": 500}, id="500"),
        pytest.param({"json": {"thirdPartyName": "Cezbek"}, "status": 200}, id="no-token"),
        pytest.param({"body": requests.ReadTimeout("read timed out")}, id="read-timeout"),
    ],
)
def test_lsaja_authorization_failure_on_send_is_unavailable_and_nothing_sent(
    http: responses.RequestsMock, kwargs: dict[str, Any]
) -> None:
    # The authorization call moves no money, whatever becomes of it.
    http.post(LSAJA_AUTH, **kwargs)

    with pytest.raises(Unavailable) as caught:
        send(make_lsaja(DictTokenStore()), LSAJA_SPEC)

    assert [call.request.url for call in http.calls] == [LSAJA_AUTH]
    assert_no_secret(caught.value)


def test_lsaja_authorization_failure_on_inquiry_is_unknown(http: responses.RequestsMock) -> None:
    http.post(LSAJA_AUTH, json={"error": "internal"}, status=500)

    with pytest.raises(Unknown):
        make_lsaja(DictTokenStore()).inquire(reference=REFERENCE)


def test_lsaja_inquiry_without_success_status_is_unknown(http: responses.RequestsMock) -> None:
    http.get(
        BASE + f"/api/v1/transfer/fund/{REFERENCE}",
        json={**(LSAJA_SPEC.inquiry_credited or {}), "status": "PROCESSING"},
    )

    with pytest.raises(Unknown):
        make_lsaja().inquire(reference=REFERENCE)


def test_lsaja_repr_holds_no_credentials() -> None:
    client = make_lsaja()

    assert LSAJA_PASSWORD not in repr(client)


# --- GoPaid, JOSVO, MTRANS specifics ---------------------------------------------------------
def test_gopaid_has_no_inquiry_and_no_idempotency() -> None:
    client = make_gopaid()

    assert (client.supports_inquiry, client.idempotent) == (False, False)
    with pytest.raises(NotImplementedError):
        client.inquire(reference=REFERENCE)


@pytest.mark.parametrize("make", [make_lsaja, make_josvo, make_mtrans, make_xenit])
def test_other_providers_support_inquiry_and_idempotency(make: Callable[[], ProviderClient]) -> None:
    client = make()

    assert (client.supports_inquiry, client.idempotent) == (True, True)


def test_josvo_credited_without_transaction_id_keeps_the_credit(http: responses.RequestsMock) -> None:
    http.post(BASE + "/api/v2/accounts/transfer", json={"code": "00", "notes": "ok"})

    outcome = make_josvo().send(reference=REFERENCE, wallet="JOSVO", msisdn=MSISDN, amount=AMOUNT)

    assert outcome == Credited(provider_ref="", http_status=200, raw={"code": "00", "notes": "ok"})


def test_josvo_200_with_non_00_code_is_unknown(http: responses.RequestsMock) -> None:
    http.post(BASE + "/api/v2/accounts/transfer", json={"code": "05", "notes": "do not honour"})

    with pytest.raises(Unknown):
        make_josvo().send(reference=REFERENCE, wallet="JOSVO", msisdn=MSISDN, amount=AMOUNT)


@pytest.mark.parametrize(
    "body",
    [
        {"isSuccess": True, "statusCode": "01", "transactionRef": "MT-3", "message": "?"},
        {"isSuccess": False, "statusCode": "00", "transactionRef": "MT-3", "message": "?"},
        {"isSuccess": "true", "statusCode": "00", "transactionRef": "MT-3", "message": "?"},
    ],
)
def test_mtrans_needs_both_success_markers(http: responses.RequestsMock, body: dict[str, Any]) -> None:
    http.post(BASE + "/ewallet/v1/transfer", json=body)

    with pytest.raises(Unknown):
        make_mtrans().send(reference=REFERENCE, wallet="LSAJA", msisdn=MSISDN, amount=AMOUNT)


# --- Xenit: pending, failed, callbacks -------------------------------------------------------
XENIT_SEND = BASE + "/api/v1/e-wallet/top-up"
XENIT_PENDING = {
    "topup_ref": "XN-2",
    "topup_time": "2025-01-02T03:04:05Z",
    "topup_status": "PENDING",
    "topup_message": "processing",
}


def test_xenit_pending_send_is_pending(http: responses.RequestsMock) -> None:
    http.post(XENIT_SEND, json=XENIT_PENDING)

    outcome = make_xenit().send(
        reference=REFERENCE, wallet="LSAJA", msisdn=MSISDN, amount=AMOUNT, callback_url=CALLBACK_URL
    )

    assert outcome == Pending(provider_ref="XN-2", http_status=200, raw=XENIT_PENDING)


@pytest.mark.parametrize("callback_url", [None, ""])
def test_xenit_send_without_callback_url_is_rejected_before_sending(
    http: responses.RequestsMock, callback_url: str | None
) -> None:
    with pytest.raises(ValueError):
        make_xenit().send(
            reference=REFERENCE, wallet="LSAJA", msisdn=MSISDN, amount=AMOUNT, callback_url=callback_url
        )

    assert len(http.calls) == 0


def test_xenit_failed_in_a_200_is_refused(http: responses.RequestsMock) -> None:
    http.post(XENIT_SEND, json=SPECS[4].refusal)

    with pytest.raises(Refused) as caught:
        make_xenit().send(
            reference=REFERENCE, wallet="LSAJA", msisdn=MSISDN, amount=AMOUNT, callback_url=CALLBACK_URL
        )

    assert type(caught.value) is Refused
    assert (caught.value.http_status, caught.value.reason) == (200, "failed: wallet closed")


@pytest.mark.parametrize(
    "topup_status,expected",
    [("SUCCESS", Credited), ("PENDING", Pending)],
)
def test_xenit_inquiry_success_and_pending(
    http: responses.RequestsMock, topup_status: str, expected: type
) -> None:
    body = {**XENIT_PENDING, "topup_status": topup_status, "ref_code": REFERENCE, "amount": 10000.50}
    http.get(BASE + f"/api/v1/e-wallet/top-up/{REFERENCE}", json=body)

    outcome = make_xenit().inquire(reference=REFERENCE)

    assert type(outcome) is expected
    assert (outcome.provider_ref, outcome.http_status) == ("XN-2", 200)


def test_xenit_inquiry_failed_is_refused(http: responses.RequestsMock) -> None:
    body = {**XENIT_PENDING, "topup_status": "FAILED", "topup_message": "wallet closed", "ref_code": REFERENCE}
    http.get(BASE + f"/api/v1/e-wallet/top-up/{REFERENCE}", json=body)

    with pytest.raises(Refused) as caught:
        make_xenit().inquire(reference=REFERENCE)

    assert type(caught.value) is Refused
    assert caught.value.reason == "failed: wallet closed"


CALLBACK_BODY = (
    b'{"topup_ref": "XN-2", "topup_time": "2025-01-02T03:04:07Z", "topup_status": "SUCCESS", '
    b'"topup_message": "ok", "ref_code": "PO-000123-1", "amount": 10000.50, '
    b'"beneficiary": "6281234567890", "wallet": "LSAJA"}'
)


@pytest.mark.parametrize("header", ["X-Callback-Token", "x-callback-token"])
def test_xenit_callback_with_good_token_is_verified(header: str) -> None:
    payload = make_xenit().verify_callback({header: XENIT_CALLBACK_TOKEN}, CALLBACK_BODY)

    assert payload == {
        "topup_ref": "XN-2",
        "topup_time": "2025-01-02T03:04:07Z",
        "topup_status": "SUCCESS",
        "topup_message": "ok",
        "ref_code": REFERENCE,
        "amount": Decimal("10000.50"),
        "beneficiary": MSISDN,
        "wallet": "LSAJA",
    }
    assert isinstance(payload["amount"], Decimal)


def test_xenit_callback_integer_amount_becomes_decimal() -> None:
    body = CALLBACK_BODY.replace(b"10000.50", b"10000")

    payload = make_xenit().verify_callback({"X-Callback-Token": XENIT_CALLBACK_TOKEN}, body.decode())

    assert payload["amount"] == Decimal("10000")
    assert isinstance(payload["amount"], Decimal)


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Callback-Token": "wrong"}, {"X-Callback-Token": ""}, {"X-Api-Key": XENIT_CALLBACK_TOKEN}],
)
def test_xenit_callback_with_bad_token_is_rejected(headers: dict[str, str]) -> None:
    with pytest.raises(CallbackRejected) as caught:
        make_xenit().verify_callback(headers, CALLBACK_BODY)

    assert caught.value.reason == "bad callback token"
    assert_no_secret(caught.value)


def test_xenit_callback_never_accepts_when_no_token_is_configured() -> None:
    client = XenitClient(
        base_url=BASE, api_key=XENIT_KEY, callback_token="", connect_timeout=1, read_timeout=1
    )

    with pytest.raises(CallbackRejected):
        client.verify_callback({"X-Callback-Token": ""}, CALLBACK_BODY)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"[1, 2]", id="not-an-object"),
        pytest.param(CALLBACK_BODY.replace(b'"SUCCESS"', b'"PENDING"'), id="not-final"),
        pytest.param(CALLBACK_BODY.replace(b'"PO-000123-1"', b'""'), id="no-ref-code"),
        pytest.param(CALLBACK_BODY.replace(b'"XN-2"', b"null"), id="success-without-topup-ref"),
        pytest.param(CALLBACK_BODY.replace(b"10000.50", b'"10000.50"'), id="amount-string"),
        pytest.param(CALLBACK_BODY.replace(b"10000.50", b"-1.00"), id="amount-negative"),
        pytest.param(CALLBACK_BODY.replace(b"10000.50", b"true"), id="amount-bool"),
    ],
)
def test_xenit_callback_with_malformed_body_is_rejected(body: bytes) -> None:
    with pytest.raises(CallbackRejected):
        make_xenit().verify_callback({"X-Callback-Token": XENIT_CALLBACK_TOKEN}, body)


def test_xenit_failed_callback_is_returned_for_the_caller_to_refuse() -> None:
    body = CALLBACK_BODY.replace(b'"SUCCESS"', b'"FAILED"')

    payload = make_xenit().verify_callback({"X-Callback-Token": XENIT_CALLBACK_TOKEN}, body)

    assert payload["topup_status"] == "FAILED"


# --- Real sockets: requests' own exceptions classify as documented ---------------------------
class OneShotServer:
    """Accepts one connection, reads the request, then ``behaviour`` (close, or sleep)."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received = b""
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(5)
            while b"\r\n\r\n" not in self.received or not self.received.endswith(b"}"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                self.received += chunk
            if self.behaviour == "sleep":
                self.release.wait(5)
        self.listener.close()

    def close(self) -> None:
        self.release.set()
        self.thread.join(5)


def real_josvo(port: int, read_timeout: float = 2.0) -> JosvoClient:
    return JosvoClient(
        base_url=f"http://127.0.0.1:{port}", api_key=JOSVO_KEY, connect_timeout=1.0, read_timeout=read_timeout
    )


def send_josvo(client: JosvoClient) -> Credited | Pending:
    return client.send(reference=REFERENCE, wallet="JOSVO", msisdn=MSISDN, amount=AMOUNT)


def test_real_connection_refused_is_unavailable() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    # the port is closed now: the connect is refused before anything is sent

    with pytest.raises(Unavailable) as caught:
        send_josvo(real_josvo(port))

    assert caught.value.reason == "connection failed before sending"


def test_real_connection_closed_after_sending_is_unknown() -> None:
    server = OneShotServer("close")
    try:
        with pytest.raises(Unknown) as caught:
            send_josvo(real_josvo(server.port))
    finally:
        server.close()

    assert caught.value.reason == "connection dropped after sending"
    assert b'"client_ref_code":"PO-000123-1"' in server.received


def test_real_read_timeout_is_unknown() -> None:
    server = OneShotServer("sleep")
    try:
        with pytest.raises(Unknown) as caught:
            send_josvo(real_josvo(server.port, read_timeout=0.2))
    finally:
        server.close()

    assert caught.value.reason == "read timeout"


# --- get_client ------------------------------------------------------------------------------
def test_provider_codes() -> None:
    assert PROVIDER_CODES == ("LSAJAH2H", "GOPAIDH2H", "JOSVOH2H", "MTRANS", "XENIT")


@pytest.mark.skipif(not os.environ.get("DJANGO_SETTINGS_MODULE"), reason="needs Django settings")
def test_get_client_one_client_per_code_per_thread() -> None:
    from wallets.providers import get_client

    expected_types = dict(zip(PROVIDER_CODES, [LinkSajaClient, GoPaidClient, JosvoClient, MtransClient, XenitClient]))
    clients = {code: get_client(code) for code in PROVIDER_CODES}
    other_thread: dict[str, ProviderClient] = {}
    worker = threading.Thread(target=lambda: other_thread.update(XENIT=get_client("XENIT")))
    worker.start()
    worker.join()

    for code, client in clients.items():
        assert type(client) is expected_types[code]
        assert client.code == code
        assert get_client(code) is client
    assert other_thread["XENIT"] is not clients["XENIT"]
    assert other_thread["XENIT"].session is not clients["XENIT"].session
    with pytest.raises(ValueError):
        get_client("OVO")
