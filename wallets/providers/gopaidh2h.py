"""GoPaid host-to-host (``GOPAIDH2H``): API key, GPAID only, no client reference and no inquiry.

Every send is a new credit, so an ``Unknown`` outcome here can never be resolved by asking or
re-sending: the caller must hold it for manual review.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from .base import ApiKeyClient, Credited, JsonScalar, Pending, error_field, text_field


class GoPaidClient(ApiKeyClient):
    code = "GOPAIDH2H"
    wallets = frozenset({"GPAID"})
    supports_inquiry = False
    idempotent = False
    send_path = "/api/v1/provider/top-up"

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
        """``{"receipient", "add_balance"}`` (GoPaid's spelling); the reference is not sent."""
        return {"receipient": msisdn, "add_balance": amount}

    def read_success(self, body: dict[str, Any], http_status: int) -> Credited | Pending | None:
        """Credited when GoPaid names its ``ref_code``."""
        ref_code = text_field(body, "ref_code")
        if ref_code is None:
            return None
        return Credited(provider_ref=ref_code, http_status=http_status, raw=body)

    def read_failure(self, body: dict[str, Any]) -> str | None:
        """400/422 ``{"error": "<reason>", "message"}``."""
        return error_field(body)

    def read_not_found(self, body: dict[str, Any]) -> bool:
        """GoPaid has no inquiry."""
        return False

    def inquire(self, *, reference: str) -> Credited | Pending:
        """GoPaid offers no status inquiry."""
        raise NotImplementedError("GOPAIDH2H has no status inquiry")
