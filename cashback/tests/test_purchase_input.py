"""The purchase body's direct reading (cashback.apis.purchase_input) against the serializer.

The direct reading exists for speed only: whenever it accepts a body, the serializer must accept
it too and make the same purchase of it; whatever it is not sure of goes to the serializer.
"""

import itertools
from decimal import Decimal

import pytest

from cashback.apis import PurchaseInputSerializer, _purchase_read, purchase_input
from rest_framework.exceptions import ValidationError

VALID = {"partner_ref": "INV/001/002", "msisdn": "628118770510", "email": "a@b.id", "quantity": 2, "amount": "750000.00", "wallet": "LSAJA"}

VARIANTS = {
    "partner_ref": ["INV/1", " padded ", "", "x" * 64, "x" * 65, "a\nb", "é-ref", 12, None],
    "msisdn": ["628118770510", "+628118770510", "08118770510", " 08118770510 ", "62811", "0811-877", 628118770510, None, "62711877051"],
    "email": ["a@b.id", " A@B.ID ", "", "   ", None, "not-an-email", "a@b", "x" * 250 + "@b.id", 5, "a\x00@b.id", "\ud800@b.id", ["a@b.id"]],
    "quantity": [2, 1, 10000, 0, 10001, "2", 2.0, True, None],
    "amount": ["750000.00", "10050.5", Decimal("10050.5"), 10050.5, 1000000000, "1000000000.01", "0", "-1", "1.001", "abc", "NaN", True, None, " 12.50 "],
    "wallet": ["LSAJA", "lsaja", " GPAID ", "", "   ", "X" * 16, "X" * 17, 7, None, "LS\x00", "\udfff", ["LSAJA"]],
}


def bodies():
    for name, values in VARIANTS.items():
        for value in values:
            yield {**VALID, name: value}
    for name in VARIANTS:
        yield {k: v for k, v in VALID.items() if k != name}
    for email, wallet, amount in itertools.product(VARIANTS["email"][:6], VARIANTS["wallet"][:5], VARIANTS["amount"][:4]):
        yield {**VALID, "email": email, "wallet": wallet, "amount": amount}
    yield {**VALID, "unexpected": "ignored"}


def serializer_purchase(body):
    serializer = PurchaseInputSerializer(data=body)
    return serializer.to_purchase() if serializer.is_valid() else None


@pytest.mark.parametrize("body", list(bodies()), ids=lambda body: repr(body)[:80])
def test_direct_reading_accepts_only_what_the_serializer_accepts_and_reads_it_the_same(body):
    direct = _purchase_read(body)
    if direct is not None:
        assert serializer_purchase(body) == direct


def test_the_usual_bodies_are_read_directly():
    # the shortcut must actually be taken, or it saves nothing (JSON numbers arrive as Decimal: DecimalJSONParser)
    for body in ({**VALID}, {**VALID, "email": None}, {k: v for k, v in VALID.items() if k != "email"}, {**VALID, "amount": Decimal("10050.5")}):
        direct = _purchase_read(body)
        assert direct is not None and direct == serializer_purchase(body)
    assert _purchase_read({**VALID, "wallet": " gpaid ", "email": " A@B.ID "}).email == "a@b.id"
    assert _purchase_read(VALID).amount == Decimal("750000.00")


def test_a_body_the_direct_reading_refuses_gets_the_serializers_errors():
    with pytest.raises(ValidationError) as caught:
        purchase_input({**VALID, "wallet": "", "quantity": 0})
    assert set(caught.value.detail) == {"wallet", "quantity"}
