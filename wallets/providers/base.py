"""What every provider client shares: outcome types, wire encoding, and error classification.

Money moves through these clients, so every failure is sorted into exactly one of three classes
(``../shared/PROVIDERS.md``, ``docs/providers.md``): nothing moved (``Refused``/``Unavailable``),
money may have moved (``Unknown``), or the money moved (``Credited``). When in doubt a failure is
``Unknown``: that costs an inquiry, while a wrong "nothing moved" can pay a customer twice.
"""

from __future__ import annotations

import datetime
import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import quote

import requests
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError

CENT = Decimal("0.01")
REASON_MAX_LENGTH = 120


# --- Outcomes --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Credited:
    """A 2xx with the provider's success marker: the money moved.

    ``provider_ref`` is ``""`` when the provider confirmed the credit without giving its own
    reference (JOSVO's ``transaction_id`` is optional); a confirmed credit is never demoted to
    unknown for want of a reference.
    """

    provider_ref: str
    http_status: int
    raw: dict[str, Any]


@dataclass(frozen=True)
class Pending:
    """Accepted, the final result comes later (Xenit ``PENDING``: callback or inquiry)."""

    provider_ref: str | None
    http_status: int
    raw: dict[str, Any]


class ProviderError(Exception):
    """Base of every provider failure. ``reason`` is short and never holds a credential.

    ``raw`` is the provider's parsed answer when there was one (``None`` otherwise).
    """

    def __init__(
        self,
        provider: str,
        reason: str,
        http_status: int | None = None,
        raw: dict[str, Any] | None = None,
    ) -> None:
        # Positional args to Exception so that the error survives pickling (Celery results).
        super().__init__(provider, reason, http_status, raw)
        self.provider = provider
        self.reason = reason
        self.http_status = http_status
        self.raw = raw

    def __str__(self) -> str:
        status = f" (http {self.http_status})" if self.http_status is not None else ""
        return f"{self.provider}: {self.reason}{status}"


class Refused(ProviderError):
    """Definite refusal: nothing moved, safe to try another route."""


class Unavailable(Refused):
    """Nothing moved because the provider could not take the request; counts against its breaker."""


class Unknown(ProviderError):
    """Money may have moved: resolve with the status inquiry, never re-send blindly."""


class TransferNotFound(ProviderError):
    """The status inquiry says the transfer does not exist: safe to send again."""


class CallbackRejected(ProviderError):
    """A provider callback failed verification (bad token or malformed body)."""


# --- Wire helpers ----------------------------------------------------------------------------
JsonScalar = str | int | bool | Decimal | None


def encode_body(body: Mapping[str, JsonScalar]) -> bytes:
    """Serialise a flat JSON object, writing a ``Decimal`` as a JSON number digit for digit.

    The standard encoder would go through ``float`` (or refuse ``Decimal``); amounts must reach
    the provider exactly as booked.
    """
    parts = []
    for key, value in body.items():
        if isinstance(value, Decimal):
            if not value.is_finite():
                raise ValueError(f"{key} is not a finite number")
            encoded = format(value, "f")
        elif value is None or isinstance(value, str | int | bool):
            encoded = json.dumps(value)
        else:
            raise TypeError(f"{key}: cannot encode {type(value).__name__}")
        parts.append(f"{json.dumps(key)}:{encoded}")
    return ("{" + ",".join(parts) + "}").encode()


def amount_on_wire(amount: Decimal) -> Decimal:
    """The amount with exactly two decimals; refuse (before anything is sent) what would round."""
    if not isinstance(amount, Decimal):
        raise TypeError("amount must be a Decimal")
    if not amount.is_finite() or amount <= 0:
        raise ValueError("amount must be a positive, finite Decimal")
    quantised = amount.quantize(CENT)
    if quantised != amount:
        raise ValueError("amount has more than 2 decimals")
    return quantised


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def parse_body(response: requests.Response) -> dict[str, Any] | None:
    """The response's JSON object with floats as ``Decimal``, or ``None`` if it is not one."""
    try:
        body = json.loads(response.content, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return body if isinstance(body, dict) else None


def text_field(body: Mapping[str, Any], key: str) -> str | None:
    """A non-empty identifier from a body (providers send ids as strings or integers)."""
    value = body.get(key)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value:
        return value
    return None


def short(text: Any) -> str:
    """A provider-supplied string fit for an exception reason."""
    return str(text)[:REASON_MAX_LENGTH]


def nothing_sent(exc: requests.RequestException) -> bool:
    """Whether a transport error certainly happened before any byte of the request was sent.

    requests' hierarchy: ``ConnectTimeout`` is both a ``ConnectionError`` and a ``Timeout``;
    ``ReadTimeout`` is only a ``Timeout`` (the request was sent). A plain ``ConnectionError`` is
    ambiguous: a refused or failed connect arrives as urllib3's ``MaxRetryError`` whose reason is
    a ``ConnectTimeoutError`` (``NewConnectionError`` and ``NameResolutionError`` are subclasses;
    urllib3's Retry counts exactly these as "the server did not receive the request"), while a
    connection dropped after sending arrives wrapping ``ProtocolError``/``RemoteDisconnected``,
    and a body cut short as ``ChunkedEncodingError``. ``SSLError`` and ``ProxyError`` can happen
    on either side of the send, so they, like everything unrecognised, count as sent.
    """
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.SSLError | requests.exceptions.ProxyError):
        return False
    if isinstance(exc, requests.ConnectionError) and exc.args:
        cause = exc.args[0]
        return isinstance(cause, MaxRetryError) and isinstance(cause.reason, ConnectTimeoutError)
    return False


def describe_transport_error(exc: requests.RequestException) -> str:
    """A short reason for a transport error, without the URL or anything the request carried."""
    if isinstance(exc, requests.ConnectTimeout):
        return "connect timeout"
    if isinstance(exc, requests.ReadTimeout):
        return "read timeout"
    if nothing_sent(exc):
        return "connection failed before sending"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "connection dropped while reading the answer"
    if isinstance(exc, requests.ConnectionError):
        return "connection dropped after sending"
    return f"transport error ({type(exc).__name__})"


class Phase(enum.Enum):
    """What a request is for; decides what a failure means."""

    # A transfer: a failure before sending is Unavailable (nothing moved), anything else Unknown.
    SEND = "send"
    # An inquiry or a settlement file: nothing can move, any failure is Unknown (the question
    # was not answered). Never Refused: for an inquiry that would mean "the transfer failed".
    QUERY = "query"


# --- The client ------------------------------------------------------------------------------
class ProviderClient:
    """One provider's HTTP client. Construct directly (tests) or through ``get_client``.

    Subclasses describe the wire: paths, bodies, and how to read the provider's answers. The
    classification of statuses and transport errors lives here, once.
    """

    code: ClassVar[str]
    wallets: ClassVar[frozenset[str]]
    supports_inquiry: ClassVar[bool] = True
    idempotent: ClassVar[bool] = True
    send_path: ClassVar[str]
    inquiry_path: ClassVar[str] = ""  # with ``{reference}``

    def __init__(
        self,
        *,
        base_url: str,
        connect_timeout: float,
        read_timeout: float,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = (connect_timeout, read_timeout)
        self.session = session if session is not None else requests.Session()

    def __repr__(self) -> str:
        # Deliberately without credentials.
        return f"<{type(self).__name__} {self.base_url}>"

    # Public interface -------------------------------------------------------------------------
    def send(
        self,
        *,
        reference: str,
        wallet: str,
        msisdn: str,
        amount: Decimal,
        notes: str = "",
        callback_url: str | None = None,
    ) -> Credited | Pending:
        """Send one transfer. Raises ``Refused``/``Unavailable`` (nothing moved) or ``Unknown``."""
        if not reference:
            raise ValueError("reference is required")
        if wallet not in self.wallets:
            # Checked before sending: a single-wallet provider would credit its own wallet.
            raise ValueError(f"{self.code} does not serve wallet {wallet!r}")
        body = self.send_body(
            reference=reference,
            wallet=wallet,
            msisdn=msisdn,
            amount=amount_on_wire(amount),
            notes=notes,
            callback_url=callback_url,
        )
        response = self._call("POST", self.send_path, phase=Phase.SEND, body=body)
        return self._send_outcome(response)

    def inquire(self, *, reference: str) -> Credited | Pending:
        """Ask what became of a transfer.

        Raises ``TransferNotFound`` (never reached the books: safe to send again), ``Refused`` (it
        failed, nothing moved) or ``Unknown`` (the inquiry itself failed).
        """
        if not reference:
            raise ValueError("reference is required")
        path = self.inquiry_path.format(reference=quote(reference, safe=""))
        response = self._call("GET", path, phase=Phase.QUERY)
        return self._inquiry_outcome(response)

    def fetch_settlement(self, *, date: datetime.date) -> str:
        """The provider's settlement CSV for one (UTC) day. Raises ``Unknown`` on any failure."""
        response = self._call(
            "GET", "/settlements", phase=Phase.QUERY, params={"date": date.isoformat()}
        )
        if response.status_code != 200:
            raise Unknown(self.code, "settlement file not served", response.status_code)
        try:
            # utf-8-sig: a byte-order mark would otherwise glue itself to the first column name.
            return response.content.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise Unknown(self.code, "settlement file is not UTF-8", response.status_code) from None

    # Provider-specific hooks -----------------------------------------------------------------
    def send_body(
        self,
        *,
        reference: str,
        wallet: str,
        msisdn: str,
        amount: Decimal,
        notes: str,
        callback_url: str | None,
    ) -> dict[str, JsonScalar]:
        """The provider's transfer request body."""
        raise NotImplementedError

    def read_success(self, body: dict[str, Any], http_status: int) -> Credited | Pending | None:
        """The outcome a 2xx body proves, or ``None`` if it lacks the success marker."""
        raise NotImplementedError

    def read_failure(self, body: dict[str, Any]) -> str | None:
        """A refusal reason if the body is the provider's documented refusal, else ``None``."""
        raise NotImplementedError

    def read_not_found(self, body: dict[str, Any]) -> bool:
        """Whether a 404 body is the provider's documented "no such transfer"."""
        raise NotImplementedError

    # A documented failure inside a 2xx (Xenit's FAILED) is a refusal; for the others a 2xx
    # without the success marker is something we cannot read, hence unknown.
    refuses_in_2xx: ClassVar[bool] = False

    def _call(
        self,
        method: str,
        path: str,
        *,
        phase: Phase,
        body: Mapping[str, JsonScalar] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """One request with the provider's credentials (see `_credentials`)."""
        return self._http(method, path, phase=phase, body=body, params=params, **self._credentials())

    def _credentials(self) -> dict[str, Any]:
        """What every request carries to authenticate: `headers=` or `auth=` for `_http`."""
        return {}

    # Machinery -------------------------------------------------------------------------------
    def _http(
        self,
        method: str,
        path: str,
        *,
        phase: Phase,
        body: Mapping[str, JsonScalar] | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> requests.Response:
        """Perform one request; transport errors become ``Unavailable`` or ``Unknown`` here."""
        all_headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = encode_body(body)
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        try:
            return self.session.request(
                method,
                self.base_url + path,
                params=params,
                data=data,
                headers=all_headers,
                auth=auth,
                timeout=self.timeout,
                # A redirected POST would become a GET elsewhere; a 3xx is read as unknown.
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            reason = describe_transport_error(exc)
            if phase is Phase.SEND and nothing_sent(exc):
                raise Unavailable(self.code, reason) from exc
            raise Unknown(self.code, reason) from exc

    def _send_outcome(self, response: requests.Response) -> Credited | Pending:
        status = response.status_code
        body = parse_body(response)
        if 200 <= status < 300:
            return self._read_2xx(body, status)
        if status in (400, 422) and body is not None:
            reason = self.read_failure(body)
            if reason is not None:
                raise Refused(self.code, reason, status, body)
        if status == 401:
            # Unauthenticated: the provider did not process the request, so nothing moved; our
            # credentials are not accepted, so the provider is unusable right now.
            raise Unavailable(self.code, "unauthorized", status, body)
        if status == 503 and body is not None and body.get("error") == "unavailable":
            raise Unavailable(self.code, "unavailable", status, body)
        # 500/502/504, a 503 or 400/422 not in the documented shape, redirects, anything else.
        raise Unknown(self.code, "unexpected answer to a transfer", status, body)

    def _inquiry_outcome(self, response: requests.Response) -> Credited | Pending:
        status = response.status_code
        body = parse_body(response)
        if 200 <= status < 300:
            return self._read_2xx(body, status)
        if status == 404 and body is not None and self.read_not_found(body):
            raise TransferNotFound(self.code, "no such transfer", status, body)
        # Any other answer, including 401/503 and a 404 not in the documented shape (a proxy's
        # 404 must never read as "safe to send again"), leaves the question open.
        raise Unknown(self.code, "inquiry not answered", status, body)

    def _read_2xx(self, body: dict[str, Any] | None, status: int) -> Credited | Pending:
        if body is None:
            raise Unknown(self.code, "unparseable 2xx answer", status)
        outcome = self.read_success(body, status)
        if outcome is not None:
            return outcome
        if self.refuses_in_2xx:
            reason = self.read_failure(body)
            if reason is not None:
                raise Refused(self.code, reason, status, body)
        raise Unknown(self.code, "2xx answer without the success marker", status, body)


class ApiKeyClient(ProviderClient):
    """A provider that authenticates every request with an ``X-Api-Key`` header."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        connect_timeout: float,
        read_timeout: float,
        session: requests.Session | None = None,
    ) -> None:
        super().__init__(
            base_url=base_url,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            session=session,
        )
        self._api_key = api_key

    def _credentials(self) -> dict[str, Any]:
        """The API key header."""
        return {"headers": {"X-Api-Key": self._api_key}}


def error_field(body: Mapping[str, Any]) -> str | None:
    """The ``{"error": "<reason>"}`` refusal shape shared by LinkSaja and GoPaid."""
    error = body.get("error")
    return short(error) if isinstance(error, str) and error else None
