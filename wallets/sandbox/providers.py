"""The five providers' wire formats: credentials, request parsing and answer bodies."""
from __future__ import annotations

import base64
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

WALLETS = ("LSAJA", "GPAID", "JOSVO")
MSISDN_RE = re.compile(r"62[0-9]{8,13}")
CENT = Decimal("0.01")
MAX_AMOUNT = Decimal("1000000000.00")  # DOMAIN.md's ceiling; above it a provider refuses (limit)


class BadRequest(Exception):
    """A 400: the request itself is wrong; nothing moved."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


class LimitExceeded(Exception):
    """A 422 refusal decided from the request (amount above the provider's per-transfer limit)."""


@dataclass
class Send:
    reference: str | None
    wallet: str
    msisdn: str
    amount: Decimal
    extra: dict = field(default_factory=dict)


def env_credentials() -> dict:
    """The sandbox's credentials: the same env names as Cezbek's, defaulting to docs/providers.md."""
    e = os.environ.get
    return {
        "LSAJAH2H_EMAIL": e("CEZBEK_LSAJAH2H_EMAIL", "cezbek@sandbox.local"),
        "LSAJAH2H_PASSWORD": e("CEZBEK_LSAJAH2H_PASSWORD", "lsaja-sandbox-secret"),
        "GOPAIDH2H_API_KEY": e("CEZBEK_GOPAIDH2H_API_KEY", "gopaid-sandbox-key"),
        "JOSVOH2H_API_KEY": e("CEZBEK_JOSVOH2H_API_KEY", "josvo-sandbox-key"),
        "MTRANS_USERNAME": e("CEZBEK_MTRANS_USERNAME", "cezbek"),
        "MTRANS_PASSWORD": e("CEZBEK_MTRANS_PASSWORD", "mtrans-sandbox-secret"),
        "XENIT_API_KEY": e("CEZBEK_XENIT_API_KEY", "xenit-sandbox-key"),
        "XENIT_CALLBACK_TOKEN": e("CEZBEK_XENIT_CALLBACK_TOKEN", "xenit-callback-token"),
    }


def same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


# -- field validation --------------------------------------------------------------------------
def parse_amount(value, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise BadRequest("invalid_amount", f"{name} must be a JSON number")
    try:
        amount = Decimal(value)
        if not amount.is_finite() or amount <= 0:
            raise BadRequest("invalid_amount", f"{name} must be greater than 0")
        # Strict on what was written: "1.230" has 3 decimals even though it equals 1.23.
        if amount.as_tuple().exponent < -2:
            raise BadRequest("invalid_amount", f"{name} must have at most 2 decimals")
    except InvalidOperation:
        raise BadRequest("invalid_amount", f"{name} is not a valid amount") from None
    if amount > MAX_AMOUNT:
        raise LimitExceeded()
    return amount.quantize(CENT)


def parse_msisdn(value, name: str) -> str:
    if not isinstance(value, str) or not MSISDN_RE.fullmatch(value):
        raise BadRequest("invalid_msisdn", f"{name} must be 10 to 15 digits starting with 62")
    return value


def parse_reference(value, name: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 100 or not value.isprintable():
        raise BadRequest("invalid_reference", f"{name} must be 1 to 100 printable characters")
    return value


def parse_wallet(value, name: str) -> str:
    if not isinstance(value, str) or value not in WALLETS:
        raise BadRequest("invalid_wallet", f"{name} must be one of {', '.join(WALLETS)}")
    return value


def require(body: dict, *names: str):
    missing = [n for n in names if n not in body or body[n] is None]
    if missing:
        raise BadRequest("invalid_request", f"missing field(s): {', '.join(missing)}")


# -- providers ---------------------------------------------------------------------------------
class Provider:
    code = ""
    wallets: tuple = ()
    idempotent = True
    fee = Decimal("0.00")
    ref_prefix = ""
    send_path = ""
    inquiry_prefix: str | None = None
    refusal = ("refused", "refused")  # (reason, message) of the injected refusal

    def __init__(self, credentials: dict):
        self.credentials = credentials

    @property
    def base(self) -> str:
        return "/" + self.code.lower()

    def new_ref(self) -> str:
        return self.ref_prefix + secrets.token_hex(8).upper()

    def authenticate(self, headers, sandbox) -> dict | None:
        """None when the caller may proceed, else the 401 body."""
        key = self.credentials.get(f"{self.code}_API_KEY")
        return None if same(headers.get("X-Api-Key"), key) else {"error": "unauthorized"}

    def parse(self, body: dict) -> Send:
        raise NotImplementedError

    # bodies
    def success_body(self, provider_ref: str, at: str, send: Send) -> dict:
        raise NotImplementedError

    def refusal_body(self, reason: str, message: str, status: int, at: str) -> dict:
        return {"error": reason, "message": message}

    def inquiry_body(self, record: dict) -> dict | None:
        return None

    def not_found_body(self) -> dict:
        return {"error": "not_found"}


class LinkSaja(Provider):
    code = "LSAJAH2H"
    wallets = ("LSAJA",)
    fee = Decimal("1000.00")
    ref_prefix = "LSJ"
    send_path = "/api/v1/transfer/fund"
    inquiry_prefix = "/api/v1/transfer/fund/"
    auth_path = "/api/v1/thirdparty/authorization"
    refusal = ("account_blocked", "Destination account is blocked")

    def authenticate(self, headers, sandbox):
        value = headers.get("Authorization") or ""
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return {"error": "unauthorized"}
        if not sandbox.token_valid(token.strip()):
            return {"error": "token_expired"}
        return None

    def parse(self, body):
        require(body, "amount", "msisdn", "reference")
        notes = body.get("notes")
        if notes is not None and not isinstance(notes, str):
            raise BadRequest("invalid_request", "notes must be a string")
        return Send(reference=parse_reference(body["reference"], "reference"), wallet="LSAJA",
                    msisdn=parse_msisdn(body["msisdn"], "msisdn"),
                    amount=parse_amount(body["amount"], "amount"), extra={"notes": notes})

    def success_body(self, provider_ref, at, send):
        return {"transactionID": provider_ref, "transactionTime": at}

    def inquiry_body(self, record):
        if record["status"] != "credited":
            return None
        return {"transactionID": record["provider_ref"], "transactionTime": record["at"],
                "reference": record["reference"], "amount": Decimal(record["amount"]),
                "msisdn": record["msisdn"], "status": "SUCCESS"}


class GoPaid(Provider):
    code = "GOPAIDH2H"
    wallets = ("GPAID",)
    idempotent = False
    fee = Decimal("1000.00")
    ref_prefix = "GPD"
    send_path = "/api/v1/provider/top-up"
    refusal = ("limit_exceeded", "Daily top-up limit exceeded for this account")

    def parse(self, body):
        # "receipient" is the wire spelling (PROVIDERS.md); it is not corrected here on purpose.
        require(body, "receipient", "add_balance")
        return Send(reference=None, wallet="GPAID", msisdn=parse_msisdn(body["receipient"], "receipient"),
                    amount=parse_amount(body["add_balance"], "add_balance"))

    def success_body(self, provider_ref, at, send):
        return {"ref_code": provider_ref, "timestamp": at}


class Josvo(Provider):
    code = "JOSVOH2H"
    wallets = ("JOSVO",)
    fee = Decimal("1000.00")
    ref_prefix = "JSV"
    send_path = "/api/v2/accounts/transfer"
    inquiry_prefix = "/api/v2/accounts/transfer/"
    refusal = ("14", "Invalid account")
    codes = {"invalid_request": "30", "invalid_amount": "13", "invalid_msisdn": "14",
             "invalid_reference": "30", "limit_exceeded": "61"}

    def parse(self, body):
        require(body, "phone_no", "amount", "client_ref_code")
        return Send(reference=parse_reference(body["client_ref_code"], "client_ref_code"), wallet="JOSVO",
                    msisdn=parse_msisdn(body["phone_no"], "phone_no"),
                    amount=parse_amount(body["amount"], "amount"))

    def success_body(self, provider_ref, at, send):
        return {"code": "00", "notes": "Success", "transaction_id": provider_ref}

    def refusal_body(self, reason, message, status, at):
        return {"code": self.codes.get(reason, reason), "notes": message}

    def inquiry_body(self, record):
        if record["status"] != "credited":
            return None
        return {"code": "00", "notes": "Success", "client_ref_code": record["reference"],
                "transaction_id": record["provider_ref"], "amount": Decimal(record["amount"]),
                "phone_no": record["msisdn"]}

    def not_found_body(self):
        return {"code": "404", "notes": "not found"}


class Mtrans(Provider):
    code = "MTRANS"
    wallets = WALLETS
    fee = Decimal("1500.00")
    ref_prefix = "MTR"
    send_path = "/ewallet/v1/transfer"
    inquiry_prefix = "/ewallet/v1/transfer/"
    refusal = ("14", "Account not found")
    codes = {"invalid_request": "30", "invalid_amount": "13", "invalid_msisdn": "14",
             "invalid_reference": "30", "invalid_wallet": "31", "limit_exceeded": "61"}

    def authenticate(self, headers, sandbox):
        value = headers.get("Authorization") or ""
        scheme, _, encoded = value.partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                user = password = None
            if same(user, self.credentials["MTRANS_USERNAME"]) and same(password, self.credentials["MTRANS_PASSWORD"]):
                return None
        return {"error": "unauthorized"}

    def parse(self, body):
        require(body, "wallet", "amount", "account", "order_id")
        return Send(reference=parse_reference(body["order_id"], "order_id"),
                    wallet=parse_wallet(body["wallet"], "wallet"),
                    msisdn=parse_msisdn(body["account"], "account"),
                    amount=parse_amount(body["amount"], "amount"))

    def success_body(self, provider_ref, at, send):
        return {"isSuccess": True, "statusCode": "00", "transactionRef": provider_ref, "message": "Success"}

    def refusal_body(self, reason, message, status, at):
        return {"isSuccess": False, "statusCode": self.codes.get(reason, reason), "transactionRef": None,
                "message": message}

    def inquiry_body(self, record):
        if record["status"] != "credited":
            return None
        return {"isSuccess": True, "statusCode": "00", "transactionRef": record["provider_ref"],
                "message": "Success", "order_id": record["reference"], "amount": Decimal(record["amount"])}

    def not_found_body(self):
        return {"isSuccess": False, "statusCode": "404", "message": "not found"}


class Xenit(Provider):
    code = "XENIT"
    wallets = WALLETS
    fee = Decimal("1250.00")
    ref_prefix = "XEN"
    send_path = "/api/v1/e-wallet/top-up"
    inquiry_prefix = "/api/v1/e-wallet/top-up/"
    refusal = ("account_closed", "Wallet account is closed")
    messages = {"SUCCESS": "Top-up successful", "PENDING": "Top-up is being processed",
                "FAILED": "Top-up failed"}

    def parse(self, body):
        require(body, "wallet", "beneficiary", "amount", "ref_code", "callback_url")
        url = body["callback_url"]
        if not isinstance(url, str) or not re.match(r"https?://[^\s/]+", url):
            raise BadRequest("invalid_callback_url", "callback_url must be an http(s) URL")
        return Send(reference=parse_reference(body["ref_code"], "ref_code"),
                    wallet=parse_wallet(body["wallet"], "wallet"),
                    msisdn=parse_msisdn(body["beneficiary"], "beneficiary"),
                    amount=parse_amount(body["amount"], "amount"), extra={"callback_url": url})

    def status_body(self, provider_ref, at, status, message=None) -> dict:
        return {"topup_ref": provider_ref, "topup_time": at, "topup_status": status,
                "topup_message": message or self.messages[status]}

    def success_body(self, provider_ref, at, send):
        return self.status_body(provider_ref, at, "SUCCESS")

    def refusal_body(self, reason, message, status, at):
        return self.status_body(None, at, "FAILED", message)

    def full_body(self, record: dict, body: dict) -> dict:
        """The top-up's fields as inquiry and callbacks carry them."""
        return {**body, "ref_code": record["reference"],
                "amount": Decimal(record["amount"]) if record["amount"] is not None else None,
                "beneficiary": record["msisdn"], "wallet": record["wallet"]}

    def inquiry_body(self, record):
        return self.full_body(record, json.loads(record["body"], parse_float=Decimal))


def make_providers(credentials: dict) -> dict:
    return {cls.code: cls(credentials) for cls in (LinkSaja, GoPaid, Josvo, Mtrans, Xenit)}
