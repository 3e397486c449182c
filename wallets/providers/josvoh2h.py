"""JOSVO host-to-host (``JOSVOH2H``): API key, JOSVO only; ``code`` ``"00"`` means credited."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from .base import ApiKeyClient, Credited, JsonScalar, Pending, short, text_field

SUCCESS_CODE = "00"


class JosvoClient(ApiKeyClient):
    code = "JOSVOH2H"
    wallets = frozenset({"JOSVO"})
    send_path = "/api/v2/accounts/transfer"
    inquiry_path = "/api/v2/accounts/transfer/{reference}"

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
        """``{"phone_no", "amount", "client_ref_code"}``."""
        return {"phone_no": msisdn, "amount": amount, "client_ref_code": reference}

    def read_success(self, body: dict[str, Any], http_status: int) -> Credited | Pending | None:
        """Credited only on ``code == "00"``; ``transaction_id`` is optional."""
        if body.get("code") != SUCCESS_CODE:
            return None
        return Credited(
            provider_ref=text_field(body, "transaction_id") or "", http_status=http_status, raw=body
        )

    def read_failure(self, body: dict[str, Any]) -> str | None:
        """400/422 ``{"code": "<non-00>", "notes"}``."""
        code = body.get("code")
        if not isinstance(code, str) or not code or code == SUCCESS_CODE:
            return None
        notes = body.get("notes")
        if isinstance(notes, str) and notes:
            return short(f"code {code}: {notes}")
        return f"code {code}"

    def read_not_found(self, body: dict[str, Any]) -> bool:
        """404 ``{"code": "404", "notes": "not found"}``."""
        return body.get("code") == "404"
