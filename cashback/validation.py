"""Input normalisation (DOMAIN.md "Input normalisation"), shared by the API and batch uploads."""

import re
from decimal import Decimal, InvalidOperation

MSISDN_DIGITS = re.compile(r"^[0-9]+$")
MAX_AMOUNT = Decimal("1000000000.00")
CENT = Decimal("0.01")


def normalize_msisdn(raw: str) -> str:
    """`+62…`, `62…` or `0…` Indonesian mobile number → `62…`, digits only, 10 to 15 digits.

    Raises ValueError with a message fit for the partner.
    """
    if not isinstance(raw, str):
        raise ValueError("Must be a string.")
    value = raw.strip()
    if value.startswith("+62"):
        rest = value[3:]
    elif value.startswith("62"):
        rest = value[2:]
    elif value.startswith("0"):
        rest = value[1:]
    else:
        raise ValueError("Must be an Indonesian mobile number starting with +62, 62 or 0.")
    if not MSISDN_DIGITS.match(rest):
        raise ValueError("Must contain digits only after the country or trunk prefix.")
    if not rest.startswith("8"):
        raise ValueError("Must be a mobile number (8 after the prefix).")
    normalized = "62" + rest
    if not 10 <= len(normalized) <= 15:
        raise ValueError("Must have 10 to 15 digits in the 62… form.")
    return normalized


def parse_amount(raw) -> Decimal:
    """A string or JSON number, > 0, at most 2 decimal places, at most 1,000,000,000.00."""
    if isinstance(raw, bool) or not isinstance(raw, (str, int, Decimal)):
        raise ValueError("Must be a decimal number or a string holding one.")
    try:
        value = Decimal(raw.strip() if isinstance(raw, str) else raw)
    except InvalidOperation:
        raise ValueError("Must be a decimal number.") from None
    if not value.is_finite():
        raise ValueError("Must be a finite number.")
    if value <= 0:
        raise ValueError("Must be greater than 0.")
    if value > MAX_AMOUNT:
        raise ValueError("Must be at most 1000000000.00.")
    if value != value.quantize(CENT):
        raise ValueError("Must have at most 2 decimal places.")
    return value.quantize(CENT)


def parse_quantity(raw, *, from_text: bool = False) -> int:
    """An integer 1 to 10,000; text holding one is accepted only from CSV uploads."""
    if from_text and isinstance(raw, str) and raw.strip().isdigit():
        raw = int(raw.strip())
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ValueError("Must be an integer.")
    if not 1 <= raw <= 10000:
        raise ValueError("Must be between 1 and 10000.")
    return raw


def parse_partner_ref(raw) -> str:
    if not isinstance(raw, str):
        raise ValueError("Must be a string.")
    if not 1 <= len(raw) <= 64:
        raise ValueError("Must be 1 to 64 characters.")
    if not raw.isprintable():
        raise ValueError("Must contain printable characters only.")
    return raw
