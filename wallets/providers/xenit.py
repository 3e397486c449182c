"""Xenit (``XENIT``): API key, all three wallets; a ``PENDING`` top-up finishes by callback."""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import requests

from .base import (
    ApiKeyClient,
    CallbackRejected,
    Credited,
    JsonScalar,
    Pending,
    short,
    text_field,
)

CALLBACK_TOKEN_HEADER = "X-Callback-Token"
CALLBACK_STATUSES = frozenset({"SUCCESS", "FAILED"})


class XenitClient(ApiKeyClient):
    code = "XENIT"
    wallets = frozenset({"LSAJA", "GPAID", "JOSVO"})
    send_path = "/api/v1/e-wallet/top-up"
    inquiry_path = "/api/v1/e-wallet/top-up/{reference}"
    # A FAILED top-up is a definite refusal whatever the status code that carries it.
    refuses_in_2xx = True

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        callback_token: str,
        connect_timeout: float,
        read_timeout: float,
        session: requests.Session | None = None,
    ) -> None:
        super().__init__(
            base_url=base_url,
            api_key=api_key,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            session=session,
        )
        self._callback_token = callback_token

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
        """``{"wallet", "beneficiary", "amount", "ref_code", "callback_url"}``."""
        if not callback_url:
            # Xenit requires it (a top-up without one is refused); checked before sending so
            # that a wiring mistake fails loudly instead of reading as a refusal.
            raise ValueError("XENIT needs a callback_url")
        return {
            "wallet": wallet,
            "beneficiary": msisdn,
            "amount": amount,
            "ref_code": reference,
            "callback_url": callback_url,
        }

    def read_success(self, body: dict[str, Any], http_status: int) -> Credited | Pending | None:
        """``SUCCESS`` is credited, ``PENDING`` is pending; anything else is not a success."""
        status = body.get("topup_status")
        if status == "SUCCESS":
            return Credited(
                provider_ref=text_field(body, "topup_ref") or "", http_status=http_status, raw=body
            )
        if status == "PENDING":
            return Pending(
                provider_ref=text_field(body, "topup_ref"), http_status=http_status, raw=body
            )
        return None

    def read_failure(self, body: dict[str, Any]) -> str | None:
        """``"topup_status": "FAILED"`` (in a 2xx, 400 or 422)."""
        if body.get("topup_status") != "FAILED":
            return None
        message = body.get("topup_message")
        return short(f"failed: {message}" if isinstance(message, str) and message else "failed")

    def read_not_found(self, body: dict[str, Any]) -> bool:
        """404 ``{"error": "not_found"}``."""
        return body.get("error") == "not_found"

    def verify_callback(self, headers: Mapping[str, str], body: bytes | str) -> dict[str, Any]:
        """Check a top-up callback's ``X-Callback-Token`` and shape; return the body.

        The returned dict has ``amount`` as a ``Decimal``, ``topup_status`` ``SUCCESS`` or
        ``FAILED`` and a non-empty ``ref_code``. Raises ``CallbackRejected`` otherwise.
        """
        if not self._token_matches(headers):
            raise CallbackRejected(self.code, "bad callback token")
        try:
            payload = json.loads(body, parse_float=Decimal)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise CallbackRejected(self.code, "callback body is not JSON") from None
        if not isinstance(payload, dict):
            raise CallbackRejected(self.code, "callback body is not an object")
        status = payload.get("topup_status")
        if status not in CALLBACK_STATUSES:
            raise CallbackRejected(self.code, "callback has no final topup_status")
        if text_field(payload, "ref_code") is None:
            raise CallbackRejected(self.code, "callback has no ref_code")
        if status == "SUCCESS" and text_field(payload, "topup_ref") is None:
            raise CallbackRejected(self.code, "successful callback has no topup_ref")
        amount = payload.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, int | Decimal):
            raise CallbackRejected(self.code, "callback amount is not a number")
        amount = Decimal(amount)
        if not amount.is_finite() or amount <= 0:
            raise CallbackRejected(self.code, "callback amount is not positive")
        payload["amount"] = amount
        return payload

    def _token_matches(self, headers: Mapping[str, str]) -> bool:
        # Header names are case-insensitive; plain dicts (tests, WSGI copies) are not.
        wanted = CALLBACK_TOKEN_HEADER.lower()
        presented = next((v for k, v in headers.items() if k.lower() == wanted), None)
        if not self._callback_token or not isinstance(presented, str):
            return False
        return hmac.compare_digest(presented.encode(), self._callback_token.encode())
