"""LinkSaja host-to-host (``LSAJAH2H``): bearer token from an authorization call, LSAJA only."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar, Protocol

import requests

from .base import (
    Credited,
    JsonScalar,
    Pending,
    Phase,
    ProviderClient,
    ProviderError,
    Unavailable,
    Unknown,
    error_field,
    parse_body,
    text_field,
)

logger = logging.getLogger(__name__)

# LinkSaja tokens live 15 minutes; stop using ours a minute early so that clock skew and slow
# requests rarely meet an expired one (a 401 is still handled by one renewal).
TOKEN_TTL_SECONDS = 14 * 60


class TokenStore(Protocol):
    """Where the bearer token is kept between requests (Django's cache in production)."""

    def get(self, key: str) -> Any: ...

    def set(self, key: str, value: Any, timeout: float | None = ...) -> Any: ...


class LinkSajaClient(ProviderClient):
    code = "LSAJAH2H"
    wallets = frozenset({"LSAJA"})
    send_path = "/api/v1/transfer/fund"
    inquiry_path = "/api/v1/transfer/fund/{reference}"
    authorization_path = "/api/v1/thirdparty/authorization"
    token_key: ClassVar[str] = "provider:LSAJAH2H:token"

    def __init__(
        self,
        *,
        base_url: str,
        email: str,
        password: str,
        token_store: TokenStore,
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
        self._email = email
        self._password = password
        self._token_store = token_store

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
        """``{"amount", "msisdn", "notes", "reference"}``."""
        return {"amount": amount, "msisdn": msisdn, "notes": notes, "reference": reference}

    def read_success(self, body: dict[str, Any], http_status: int) -> Credited | Pending | None:
        """Credited when LinkSaja names its transaction (and, on inquiry, says ``SUCCESS``)."""
        transaction_id = text_field(body, "transactionID")
        if transaction_id is None:
            return None
        # The inquiry answer carries a status; a transfer answer does not.
        if "status" in body and body["status"] != "SUCCESS":
            return None
        return Credited(provider_ref=transaction_id, http_status=http_status, raw=body)

    def read_failure(self, body: dict[str, Any]) -> str | None:
        """400/422 ``{"error": "<reason>", "message"}``."""
        return error_field(body)

    def read_not_found(self, body: dict[str, Any]) -> bool:
        """404 ``{"error": "not_found"}``."""
        return body.get("error") == "not_found"

    def _call(
        self,
        method: str,
        path: str,
        *,
        phase: Phase,
        body: Mapping[str, JsonScalar] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """One request with the bearer token, renewed once if LinkSaja answers 401.

        Retrying is safe: a 401 means the request was not processed. A second 401 is returned
        as is and classified by the caller (a send: ``Unavailable``; an inquiry: ``Unknown``).
        """
        token = self._token_store.get(self.token_key)
        if not isinstance(token, str) or not token:
            token = self._renew_token(phase)
        response = self._http(
            method, path, phase=phase, body=body, params=params, headers=self._bearer(token)
        )
        if response.status_code != 401:
            return response
        response.close()
        logger.info("LSAJAH2H rejected the bearer token; renewing it once")
        token = self._renew_token(phase)
        # No second renewal: a 401 on a token fresh from LinkSaja means our credentials are not
        # accepted. Nothing was processed, so for a send it reads as Unavailable (nothing moved,
        # the provider is unusable right now), never as Unknown.
        return self._http(
            method, path, phase=phase, body=body, params=params, headers=self._bearer(token)
        )

    @staticmethod
    def _bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def _renew_token(self, phase: Phase) -> str:
        """Fetch a fresh token and keep it in the store.

        No money moves on this call, so during a send any failure here is ``Unavailable``;
        during an inquiry it is ``Unknown`` (the question went unanswered). The token and the
        password never reach a log or an exception.
        """
        failure = Unavailable if phase is Phase.SEND else Unknown
        try:
            response = self._http(
                "POST",
                self.authorization_path,
                phase=phase,
                body={"email": self._email, "password": self._password},
            )
        except ProviderError as exc:
            raise failure(self.code, f"authorization failed: {exc.reason}") from exc
        answer = parse_body(response) if response.status_code == 200 else None
        token = answer.get("token") if answer is not None else None
        if not isinstance(token, str) or not token:
            raise failure(self.code, "authorization refused", response.status_code)
        self._token_store.set(self.token_key, token, timeout=TOKEN_TTL_SECONDS)
        return token
