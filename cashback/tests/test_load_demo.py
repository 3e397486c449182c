"""`load_demo`: the demo configuration, idempotent, with the ladder of DOMAIN.md §2 and a fee table
whose cheapest route changes with the payout."""

import io
import json
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.core.management import call_command

from cashback.models import CashbackRule
from cashback.services import Purchase, transaction_record
from loyalty.models import RewardRule, TierLevel
from partners.models import Partner, PartnerCredential
from wallets.models import Fee, Provider, Wallet

D = Decimal
MODELS = (Wallet, Provider, Fee, CashbackRule, TierLevel, RewardRule, Partner)


def snapshot() -> dict:
    return {m.__name__: list(m.objects.order_by("id").values()) for m in MODELS}


def load(*args) -> str:
    out = io.StringIO()
    call_command("load_demo", *args, stdout=out)
    return out.getvalue()


def test_first_load_creates_the_demo_and_the_second_creates_nothing(db):
    # when
    first = json.loads(load("--json"))
    # then
    assert first == {
        "wallets": {"created": 3, "updated": 0, "archived": 0},
        "providers": {"created": 5, "updated": 0, "archived": 0},
        "fees": {"created": 9, "updated": 0, "archived": 0},
        "cashback_rules": {"created": 4, "updated": 0, "archived": 0},
        "tiers": {"created": 3, "updated": 0, "archived": 0},
        "rewards": {"created": 5, "updated": 0, "archived": 0},
        "partners": {"created": 3, "updated": 0, "archived": 0},
    }
    before = snapshot()
    # when: again
    second = json.loads(load("--json"))
    # then: nothing at all, the same ids
    assert second == {section: {"created": 0, "updated": 0, "archived": 0} for section in first}
    assert snapshot() == before
    assert load() == "demo data already loaded: nothing changed\n"
    assert snapshot() == before


def test_demo_ladder_and_rewards_are_domain_section_2_exactly(db):
    load()
    assert list(TierLevel.objects.filter(archived=False).values_list("name", "rank", "promote_after", "validity_days")) == [
        ("BRONZE", 1, 5, None),
        ("SILVER", 2, 10, 90),
        ("GOLD", 3, None, 180),
    ]
    assert list(RewardRule.objects.filter(archived=False).values_list("tier__name", "nth", "reward")) == [
        ("BRONZE", 5, D("5000.00")),
        ("SILVER", 5, D("10000.00")),
        ("SILVER", 10, D("25000.00")),
        ("GOLD", 5, D("25000.00")),
        ("GOLD", 10, D("50000.00")),
    ]


def test_demo_parties(db):
    load()
    assert list(Wallet.objects.values_list("code", "name", "active")) == [
        ("GPAID", "GoPaid", True),
        ("JOSVO", "Josvo", True),
        ("LSAJA", "LinkSaja", True),
    ]
    assert list(Provider.objects.order_by("code").values_list("code", "kind", "priority", "active")) == [
        ("GOPAIDH2H", "h2h", 1, True),
        ("JOSVOH2H", "h2h", 1, True),
        ("LSAJAH2H", "h2h", 1, True),
        ("MTRANS", "aggregator", 2, True),
        ("XENIT", "aggregator", 3, True),
    ]
    assert list(Partner.objects.values_list("code", "name", "email", "active")) == [
        ("BLAPAK", "Blapak", "ops@blapak.id", True),
        ("LAJADA", "Lajada", "ops@lajada.id", True),
        ("TOKMED", "Tokmed", "ops@tokmed.id", True),
    ]
    assert PartnerCredential.objects.count() == 0  # partner_credentials issues keys, not load_demo
    # each H2H link reaches its own wallet only; both aggregators reach all three
    routes = sorted(Fee.objects.filter(archived=False).values_list("provider__code", "wallet__code"))
    assert routes == [
        ("GOPAIDH2H", "GPAID"), ("JOSVOH2H", "JOSVO"), ("LSAJAH2H", "LSAJA"),
        ("MTRANS", "GPAID"), ("MTRANS", "JOSVO"), ("MTRANS", "LSAJA"),
        ("XENIT", "GPAID"), ("XENIT", "JOSVO"), ("XENIT", "LSAJA"),
    ]  # fmt: skip


def _cheapest(wallet: str, amount: Decimal) -> tuple[str, Decimal, Decimal]:
    """(provider, fee, dearest fee) by DOMAIN.md §4, computed here from the stored fee rows."""
    fees = sorted(
        (
            (f.flat_fee + amount * f.percent_fee / 100).quantize(D("0.01"), rounding=ROUND_HALF_UP),
            f.provider.priority,
            f.provider.code,
        )
        for f in Fee.objects.filter(wallet__code=wallet, archived=False, active=True).select_related("provider")
    )
    return fees[0][2], fees[0][0], fees[-1][0]


@pytest.mark.parametrize(
    "wallet, amount, provider, fee, dearest",
    [
        ("LSAJA", "10000.00", "LSAJAH2H", "700.00", "1500.00"),
        ("GPAID", "24999.99", "GOPAIDH2H", "1000.00", "1500.00"),  # 999.9998 → 1000.00; XENIT 1000.00 (999.9999): priority
        ("JOSVO", "25000.00", "JOSVOH2H", "1000.00", "1500.00"),  # tie with XENIT: H2H's priority wins
        ("LSAJA", "50000.00", "XENIT", "1250.00", "1500.00"),
        ("GPAID", "75000.00", "MTRANS", "1500.00", "2000.00"),  # tie with XENIT: MTRANS's priority wins
        ("JOSVO", "100000.00", "MTRANS", "1500.00", "2500.00"),
    ],
)
def test_the_route_depends_on_the_payout(db, wallet, amount, provider, fee, dearest):
    load()
    assert _cheapest(wallet, D(amount)) == (provider, D(fee), D(dearest))


def test_demo_rules_compute_the_documented_cashback(db):
    load()
    lajada, tokmed = Partner.objects.get(code="LAJADA"), Partner.objects.get(code="TOKMED")
    cases = [
        (lajada, "A-1", 1, "100000.00", "Small basket", "1000.00"),
        (lajada, "A-2", 2, "750000.00", "Mid basket", "11250.00"),
        (lajada, "A-3", 1, "2000000.00", "Large basket", "40000.00"),
        (lajada, "A-4", 1, "9000000.00", "Large basket", "100000.00"),  # capped
        (tokmed, "B-1", 5, "100000.00", "TOKMED bulk", "2500.00"),  # partner-specific beats global
        (tokmed, "B-2", 4, "100000.00", "Small basket", "1000.00"),
    ]
    for partner, ref, quantity, amount, rule_name, cashback in cases:
        txn, _ = transaction_record(partner=partner, purchase=Purchase(ref, "628118770510", quantity, D(amount), "LSAJA"))
        assert (ref, txn.rule.name, txn.cashback) == (ref, rule_name, D(cashback))
