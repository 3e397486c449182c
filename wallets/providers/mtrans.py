"""MTRANS (``MTRANS``): HTTP Basic auth, all three wallets; success is ``isSuccess`` + ``"00"``."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import requests

from .base import Credited, JsonScalar, Pending, ProviderClient, short, text_field

SUCCESS_CODE = "00"


class MtransClient(ProviderClient):
    code = "MTRANS"
    wallets = frozenset({"LSAJA", "GPAID", "JOSVO"})
    send_path = "/ewallet/v1/transfer"
    inquiry_path = "/ewallet/v1/transfer/{reference}"

    def __init__(
        self,
        *,
        base_url: str,
        username: str,
        password: str,
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
        self._username = username
        self._password = password

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
        """``{"wallet", "amount", "account", "order_id"}``."""
        return {"wallet": wallet, "amount": amount, "account": msisdn, "order_id": reference}

    def read_success(self, body: dict[str, Any], http_status: int) -> Credited | Pending | None:
        """Credited only when ``isSuccess`` is true and ``statusCode`` is ``"00"``."""
        if body.get("isSuccess") is not True or body.get("statusCode") != SUCCESS_CODE:
            return None
        return Credited(
            provider_ref=text_field(body, "transactionRef") or "", http_status=http_status, raw=body
        )

    def read_failure(self, body: dict[str, Any]) -> str | None:
        """400/422 ``{"isSuccess": false, "statusCode": "<non-00>", "message"}``."""
        code = body.get("statusCode")
        if body.get("isSuccess") is not False or not isinstance(code, str) or not code:
            return None
        if code == SUCCESS_CODE:
            return None
        message = body.get("message")
        if isinstance(message, str) and message:
            return short(f"status {code}: {message}")
        return f"status {code}"

    def read_not_found(self, body: dict[str, Any]) -> bool:
        """404 ``{"isSuccess": false, "statusCode": "404", "message": "not found"}``."""
        return body.get("isSuccess") is False and body.get("statusCode") == "404"

    def _credentials(self) -> dict[str, Any]:
        """HTTP Basic credentials."""
        return {"auth": (self._username, self._password)}
