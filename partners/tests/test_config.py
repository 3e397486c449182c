"""Configuration as code (OPERATIONS.md): export → import is a no-op, sets are replaced by
archiving, and an invalid file is refused with the first error's path and changes nothing."""

import copy
import io
import json
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from cashback.models import CashbackRule, Transaction
from cashback.services import Purchase, transaction_record
from cezbek.configuration import config_export, config_import
from cezbek.errors import ValidationFailed
from loyalty.models import JourneyEntry, LoyaltyState, RewardRule, TierLevel
from partners.models import Partner
from wallets.models import Fee, Provider, Wallet

D = Decimal
JAKARTA = dt_timezone(timedelta(hours=7))
ZERO = {"created": 0, "updated": 0, "archived": 0}
SECTIONS = ("wallets", "providers", "fees", "cashback_rules", "tiers", "rewards", "partners")


def rule(name, percentage, *, partner=None, min_amount="0.00", max_amount=None, cap=None, valid_until=None):
    return {
        "name": name, "partner": partner, "min_quantity": 1, "max_quantity": None,
        "min_amount": min_amount, "max_amount": max_amount, "percentage": percentage, "max_cashback": cap,
        "valid_from": "2024-01-01T00:00:00+07:00", "valid_until": valid_until, "active": True,
    }  # fmt: skip


FULL = {
    "wallets": [
        {"code": "GPAID", "name": "GoPaid", "active": True},
        {"code": "LSAJA", "name": "LinkSaja", "active": True},
    ],
    "providers": [
        {"code": "LSAJAH2H", "name": "LinkSaja H2H", "kind": "h2h", "priority": 1, "active": True},
        {"code": "MTRANS", "name": "Middletrans", "kind": "aggregator", "priority": 2, "active": True},
    ],
    "fees": [
        {"provider": "MTRANS", "wallet": "GPAID", "flat_fee": "1500.00", "percent_fee": "0.00", "active": True},
        {"provider": "LSAJAH2H", "wallet": "LSAJA", "flat_fee": "500.00", "percent_fee": "2.00", "active": True},
        {"provider": "MTRANS", "wallet": "LSAJA", "flat_fee": "1500.00", "percent_fee": "0.00", "active": True},
    ],
    "cashback_rules": [
        rule("Small basket", "1.00", max_amount="499999.99", cap="5000.00"),
        rule("Mid basket", "1.50", min_amount="500000.00", max_amount="1499999.99", cap="20000.00"),
        rule("Lajada special", "3.00", partner="LAJADA", valid_until="2030-12-31T23:59:59+07:00"),
    ],
    "tiers": [
        {"name": "BRONZE", "rank": 1, "promote_after": 5, "validity_days": None},
        {"name": "SILVER", "rank": 2, "promote_after": 10, "validity_days": 90},
        {"name": "GOLD", "rank": 3, "promote_after": None, "validity_days": 180},
    ],
    "rewards": [
        {"tier": "BRONZE", "nth": 5, "reward": "5000.00"},
        {"tier": "SILVER", "nth": 5, "reward": "10000.00"},
        {"tier": "SILVER", "nth": 10, "reward": "25000.00"},
        {"tier": "GOLD", "nth": 5, "reward": "25000.00"},
        {"tier": "GOLD", "nth": 10, "reward": "50000.00"},
    ],
    "partners": [
        {"code": "LAJADA", "name": "Lajada", "email": "ops@lajada.id", "msisdn": "628111000001",
         "officer": "Rina", "address": "Jakarta", "webhook_url": None, "active": True},
        {"code": "TOKMED", "name": "Tokmed", "email": "", "msisdn": "", "officer": "", "address": "",
         "webhook_url": "https://tokmed.example/hooks/cezbek", "active": False},
    ],
}  # fmt: skip

MODELS = (Wallet, Provider, Fee, CashbackRule, TierLevel, RewardRule, Partner, LoyaltyState)


def snapshot() -> dict:
    """Every configuration row with every column (ids included), to show that nothing changed."""
    return {m.__name__: list(m.objects.order_by("id").values()) for m in MODELS}


def full() -> dict:
    return copy.deepcopy(FULL)


# --- Export --------------------------------------------------------------------------------


def test_export_of_rows_made_elsewhere_has_the_documented_shape(wallets, ladder, partner):
    # given rows created directly (as the admin would), not through an import
    mtrans = Provider.objects.create(code="MTRANS", name="Middletrans", kind="aggregator", priority=2)
    Fee.objects.create(provider=mtrans, wallet=wallets["LSAJA"], flat_fee=D("1500"), percent_fee=D("0.5"))
    Fee.objects.create(provider=mtrans, wallet=wallets["GPAID"], flat_fee=D("1000"), archived=True)
    CashbackRule.objects.create(
        name="Mid basket", min_amount=D("500000"), max_amount=D("1499999.99"), percentage=D("1.5"),
        max_cashback=D("20000"), valid_from=datetime(2023, 12, 31, 17, 0, tzinfo=dt_timezone.utc),
    )  # fmt: skip
    # when
    data = config_export()
    # then
    assert list(data) == list(SECTIONS)
    assert data["wallets"] == [
        {"code": "GPAID", "name": "GoPaid", "active": True},
        {"code": "JOSVO", "name": "Josvo", "active": True},
        {"code": "LSAJA", "name": "LinkSaja", "active": True},
    ]
    assert data["providers"] == [{"code": "MTRANS", "name": "Middletrans", "kind": "aggregator", "priority": 2, "active": True}]
    assert data["fees"] == [
        {"provider": "MTRANS", "wallet": "LSAJA", "flat_fee": "1500.00", "percent_fee": "0.50", "active": True}
    ]
    assert data["cashback_rules"] == [
        {"name": "Mid basket", "partner": None, "min_quantity": 1, "max_quantity": None,
         "min_amount": "500000.00", "max_amount": "1499999.99", "percentage": "1.50", "max_cashback": "20000.00",
         "valid_from": "2024-01-01T00:00:00+07:00", "valid_until": None, "active": True}
    ]  # fmt: skip
    assert data["tiers"] == FULL["tiers"]
    assert data["rewards"] == FULL["rewards"]
    assert data["partners"] == [
        {"code": "LAJADA", "name": "Lajada", "email": "", "msisdn": "", "officer": "", "address": "",
         "webhook_url": None, "active": True}
    ]  # fmt: skip


def test_export_then_import_changes_nothing_at_all(wallets, ladder, partner):
    # given a configuration built partly by hand and partly by an earlier import
    config_import(full())
    Partner.objects.create(code="BLAPAK", name="Blapak", webhook_url="")  # a blank form field's "": kept as is
    before = snapshot()
    exported = config_export()
    # when
    counts = config_import(json.loads(json.dumps(exported)))
    # then
    assert counts == {section: ZERO for section in SECTIONS}
    assert snapshot() == before
    assert json.dumps(config_export()) == json.dumps(exported)


def test_import_into_an_empty_database_then_again_is_a_noop(db):
    counts = config_import(full())
    assert counts == {
        "wallets": {"created": 2, "updated": 0, "archived": 0},
        "providers": {"created": 2, "updated": 0, "archived": 0},
        "fees": {"created": 3, "updated": 0, "archived": 0},
        "cashback_rules": {"created": 3, "updated": 0, "archived": 0},
        "tiers": {"created": 3, "updated": 0, "archived": 0},
        "rewards": {"created": 5, "updated": 0, "archived": 0},
        "partners": {"created": 2, "updated": 0, "archived": 0},
    }
    assert config_export() == FULL  # FULL is written in the export's order
    lajada_rule = CashbackRule.objects.get(name="Lajada special")
    assert lajada_rule.partner.code == "LAJADA"
    assert lajada_rule.valid_until == datetime(2030, 12, 31, 16, 59, 59, tzinfo=dt_timezone.utc)
    before = snapshot()
    assert config_import(full()) == {section: ZERO for section in SECTIONS}
    assert snapshot() == before


def test_every_section_is_optional_and_an_empty_file_changes_nothing(db):
    config_import(full())
    before = snapshot()
    assert config_import({}) == {section: ZERO for section in SECTIONS}
    assert snapshot() == before


def test_upserts_by_code_update_in_place_and_never_remove(db):
    config_import(full())
    lajada_id = Partner.objects.get(code="LAJADA").id
    mtrans_id = Provider.objects.get(code="MTRANS").id
    # when: a file renames a wallet, changes a provider's priority, adds a partner, omits the others
    counts = config_import(
        {
            "wallets": [{"code": "GPAID", "name": "GoPaid Indonesia", "active": False}],
            "providers": [{"code": "MTRANS", "name": "Middletrans", "kind": "aggregator", "priority": 7, "active": True}],
            "partners": [{"code": "BLAPAK", "name": "Blapak", "email": "ops@blapak.id", "msisdn": "628111000003",
                          "officer": "Sari", "address": "Surabaya", "webhook_url": None, "active": True}],
        }  # fmt: skip
    )
    # then
    assert counts["wallets"] == {"created": 0, "updated": 1, "archived": 0}
    assert counts["providers"] == {"created": 0, "updated": 1, "archived": 0}
    assert counts["partners"] == {"created": 1, "updated": 0, "archived": 0}
    assert list(Wallet.objects.values_list("code", "name", "active")) == [
        ("GPAID", "GoPaid Indonesia", False),
        ("LSAJA", "LinkSaja", True),
    ]
    assert Provider.objects.get(code="MTRANS").id == mtrans_id
    assert Provider.objects.get(code="MTRANS").priority == 7
    assert list(Partner.objects.values_list("code", flat=True)) == ["BLAPAK", "LAJADA", "TOKMED"]
    assert Partner.objects.get(code="LAJADA").id == lajada_id
    assert Fee.objects.filter(archived=False).count() == 3  # fees section absent: untouched


# --- Replacing sets --------------------------------------------------------------------------


def test_replacing_the_rule_set_archives_old_rules_and_a_transaction_keeps_its_rule(wallets, partner):
    # given the file's rules, and a purchase computed with "Mid basket" (1.50 %)
    data = full()
    del data["wallets"]
    config_import(data)
    lajada, _ = partner
    small_id = CashbackRule.objects.get(name="Small basket").id
    mid = CashbackRule.objects.get(name="Mid basket")
    purchase = Purchase(partner_ref="INV-1", msisdn="628111000009", quantity=1, amount=D("750000.00"), wallet="LSAJA")
    # the LAJADA-only 3 % rule would win; deactivate it through the file to see "Mid basket" used
    data["cashback_rules"][2]["active"] = False
    counts = config_import({"cashback_rules": data["cashback_rules"]})
    assert counts["cashback_rules"] == {"created": 1, "updated": 0, "archived": 1}
    txn, created = transaction_record(partner=lajada, purchase=purchase)
    assert created and (txn.rule_id, txn.cashback) == (mid.id, D("11250.00"))
    # when: the mid basket goes to 2.00 % and the special rule is dropped
    data["cashback_rules"][1]["percentage"] = "2.00"
    counts = config_import({"cashback_rules": data["cashback_rules"][:2]})
    # then: the changed and the dropped rule are archived, the identical one kept with its id
    assert counts["cashback_rules"] == {"created": 1, "updated": 0, "archived": 2}
    assert CashbackRule.objects.get(id=small_id).archived is False
    mid.refresh_from_db()
    assert (mid.archived, mid.percentage) == (True, D("1.50"))
    live = list(CashbackRule.objects.filter(archived=False).order_by("id").values_list("name", "percentage"))
    assert live == [("Small basket", D("1.00")), ("Mid basket", D("2.00"))]
    txn = Transaction.objects.get(id=txn.id)
    assert (txn.rule_id, txn.cashback) == (mid.id, D("11250.00"))
    # and the next purchase uses the new rule
    txn2, _ = transaction_record(partner=lajada, purchase=Purchase("INV-2", "628111000009", 1, D("750000.00"), "LSAJA"))
    assert txn2.rule.name == "Mid basket" and txn2.rule_id != mid.id and txn2.cashback == D("15000.00")
    assert [r["name"] for r in config_export()["cashback_rules"]] == ["Small basket", "Mid basket"]


def test_replacing_fees_archives_the_old_route_price(db):
    config_import(full())
    old = Fee.objects.get(provider__code="MTRANS", wallet__code="LSAJA")
    data = full()
    data["fees"][2]["flat_fee"] = "1250"  # ≤ 2 places: "1250" is fine
    counts = config_import({"fees": data["fees"]})
    assert counts["fees"] == {"created": 1, "updated": 0, "archived": 1}
    old.refresh_from_db()
    assert old.archived is True
    new = Fee.objects.get(provider__code="MTRANS", wallet__code="LSAJA", archived=False)
    assert (new.flat_fee, new.percent_fee) == (D("1250.00"), D("0.00"))
    assert config_export()["fees"][2]["flat_fee"] == "1250.00"


def test_replacing_a_tier_moves_its_customers_and_carries_its_rewards(wallets, partner):
    # given a SILVER customer with history
    data = full()
    del data["wallets"]
    config_import(data)
    lajada, _ = partner
    for n in range(5):
        transaction_record(partner=lajada, purchase=Purchase(f"INV-{n}", "628111000009", 1, D("1000.00"), "LSAJA"))
    state = LoyaltyState.objects.get(partner=lajada, msisdn="628111000009")
    old_silver = TierLevel.objects.get(name="SILVER", archived=False)
    assert (state.tier_id, state.count) == (old_silver.id, 0)
    expires_at = state.expires_at
    # when: SILVER's validity changes, with no rewards section in the file
    tiers = copy.deepcopy(FULL["tiers"])
    tiers[1]["validity_days"] = 60
    counts = config_import({"tiers": tiers})
    # then: old SILVER archived, a new SILVER created; the customer follows; rewards re-created on it
    assert counts["tiers"] == {"created": 1, "updated": 0, "archived": 1}
    assert counts["rewards"] == {"created": 2, "updated": 0, "archived": 2}
    new_silver = TierLevel.objects.get(name="SILVER", archived=False)
    assert new_silver.validity_days == 60 and new_silver.id != old_silver.id
    state.refresh_from_db()
    assert (state.tier_id, state.count, state.expires_at) == (new_silver.id, 0, expires_at)
    assert list(RewardRule.objects.filter(tier=new_silver, archived=False).values_list("nth", "reward")) == [
        (5, D("10000.00")),
        (10, D("25000.00")),
    ]
    assert RewardRule.objects.filter(tier=old_silver, archived=True).count() == 2
    # history keeps the tier it was written with
    promoted = JourneyEntry.objects.get(reason="PROMOTED")
    assert promoted.tier_after_id == old_silver.id
    assert Transaction.objects.get(partner_ref="INV-4").tier_id == old_silver.id
    assert config_export()["rewards"] == FULL["rewards"]
    # and the customer's 5th SILVER purchase still earns SILVER's reward
    for n in range(5, 10):
        txn, _ = transaction_record(partner=lajada, purchase=Purchase(f"INV-{n}", "628111000009", 1, D("1000.00"), "LSAJA"))
    assert (txn.tier_id, txn.tier_count, txn.reward) == (new_silver.id, 5, D("10000.00"))


def test_removing_a_tier_that_has_customers_is_refused(wallets, partner):
    data = full()
    del data["wallets"]
    config_import(data)
    lajada, _ = partner
    gold = TierLevel.objects.get(name="GOLD")
    LoyaltyState.objects.create(partner=lajada, msisdn="628111000009", tier=gold, count=2, entered_at=datetime(2026, 1, 1, tzinfo=JAKARTA))
    before = snapshot()
    tiers = [dict(FULL["tiers"][0]), {**FULL["tiers"][1], "promote_after": None}]
    with pytest.raises(ValidationFailed) as caught:
        config_import({"tiers": tiers, "rewards": FULL["rewards"][:3]})
    assert caught.value.message == (
        "tiers: 1 customer(s) are on GOLD (rank 3), which this file removes; keep a tier named GOLD or with rank 3"
    )
    assert snapshot() == before
    # a rename keeps the rank: the customers follow to the renamed tier
    renamed = copy.deepcopy(FULL["tiers"])
    renamed[2]["name"] = "PLATINUM"
    rewards = [r if r["tier"] != "GOLD" else {**r, "tier": "PLATINUM"} for r in FULL["rewards"]]
    counts = config_import({"tiers": renamed, "rewards": rewards})
    assert counts["tiers"] == {"created": 1, "updated": 0, "archived": 1}
    assert counts["rewards"] == {"created": 2, "updated": 0, "archived": 2}
    assert LoyaltyState.objects.get(msisdn="628111000009").tier.name == "PLATINUM"


def test_rewards_alone_refer_to_the_live_tiers(ladder):
    counts = config_import({"rewards": [{"tier": "GOLD", "nth": 1, "reward": "1000.00"}]})
    assert counts["rewards"] == {"created": 1, "updated": 0, "archived": 5}
    assert list(RewardRule.objects.filter(archived=False).values_list("tier__name", "nth", "reward")) == [
        ("GOLD", 1, D("1000.00"))
    ]
    with pytest.raises(ValidationFailed) as caught:
        config_import({"rewards": [{"tier": "PLATINUM", "nth": 1, "reward": "1000.00"}]})
    assert caught.value.message == "rewards[0].tier: unknown tier 'PLATINUM' (not in live tiers)"


def test_fees_may_refer_to_wallets_and_providers_already_in_the_database(wallets):
    Provider.objects.create(code="XENIT", name="Xenit", kind="aggregator", priority=3)
    counts = config_import({"fees": [{"provider": "XENIT", "wallet": "JOSVO", "flat_fee": "750.00", "percent_fee": "1.00", "active": True}]})
    assert counts["fees"] == {"created": 1, "updated": 0, "archived": 0}


# --- Invalid files ---------------------------------------------------------------------------


def _changed() -> dict:
    """A valid file that differs from FULL in every section, so a partial write would show."""
    data = full()
    data["wallets"].append({"code": "JOSVO", "name": "Josvo", "active": True})
    data["providers"][0]["priority"] = 5
    data["fees"][0]["flat_fee"] = "1400.00"
    data["cashback_rules"][0]["percentage"] = "1.25"
    data["tiers"][1]["validity_days"] = 60
    data["rewards"][0]["reward"] = "6000.00"
    data["partners"][0]["officer"] = "Dewi"
    return data


def _set(path: tuple, value):
    def mutate(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _delete(path: tuple):
    def mutate(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


DECIMAL = 'must be a string holding a decimal with at most 2 places, e.g. "1500.00"'

INVALID = [
    # the file and its sections
    (_set(("walets",), []), "walets: unknown section (expected wallets, providers, fees, cashback_rules, tiers, rewards, partners)"),
    (_set(("fees",), {}), "fees: must be a list"),
    (_set(("providers", 1), "MTRANS"), "providers[1]: must be an object"),
    # keys
    (_delete(("providers", 1, "priority")), "providers[1].priority: required"),
    (_set(("fees", 0, "currency"), "IDR"), "fees[0].currency: unknown key (expected provider, wallet, flat_fee, percent_fee, active)"),
    # types
    (_set(("wallets", 0, "active"), "yes"), "wallets[0].active: must be true or false"),
    (_set(("tiers", 0, "rank"), True), "tiers[0].rank: must be an integer ≥ 1"),
    (_set(("tiers", 1, "validity_days"), 0), "tiers[1].validity_days: must be an integer ≥ 1 or null"),
    (_set(("providers", 0, "kind"), "bank"), 'providers[0].kind: must be one of "h2h", "aggregator"'),
    (_set(("wallets", 1, "code"), "lsaja"), "wallets[1].code: must be 2 to 16 upper-case letters, digits or _"),
    (_set(("wallets", 1, "name"), "  "), "wallets[1].name: must not be empty"),
    (_set(("wallets", 1, "name"), "Go\x00Paid"), "wallets[1].name: must not contain NUL characters"),  # PostgreSQL cannot store it
    # decimals
    (_set(("fees", 1, "flat_fee"), "500.005"), f"fees[1].flat_fee: {DECIMAL}"),
    (_set(("cashback_rules", 0, "min_amount"), 0), f"cashback_rules[0].min_amount: {DECIMAL}"),
    (_set(("cashback_rules", 0, "min_amount"), "1e3"), f"cashback_rules[0].min_amount: {DECIMAL}"),
    (_set(("fees", 1, "flat_fee"), "-1.00"), "fees[1].flat_fee: must be ≥ 0 and ≤ 999999999999.99"),
    (_set(("fees", 1, "percent_fee"), "100.01"), "fees[1].percent_fee: must be ≥ 0 and ≤ 100"),
    (_set(("cashback_rules", 2, "percentage"), "0.00"), "cashback_rules[2].percentage: must be > 0 and ≤ 100"),
    (_set(("cashback_rules", 2, "percentage"), "100.01"), "cashback_rules[2].percentage: must be > 0 and ≤ 100"),
    (_set(("rewards", 0, "reward"), "0"), "rewards[0].reward: must be > 0 and ≤ 999999999999.99"),
    # ranges and datetimes
    (_set(("cashback_rules", 1, "max_amount"), "499999.99"), "cashback_rules[1].max_amount: must be ≥ min_amount"),
    (_set(("cashback_rules", 0, "valid_from"), "2024-01-01T00:00:00"), "cashback_rules[0].valid_from: must carry a UTC offset (e.g. +07:00 or Z)"),
    (_set(("cashback_rules", 0, "valid_from"), "1 Jan 2024"), 'cashback_rules[0].valid_from: must be an ISO 8601 datetime with an offset, e.g. "2024-01-01T00:00:00+07:00"'),
    (_set(("cashback_rules", 2, "valid_until"), "2023-12-31T23:59:59+07:00"), "cashback_rules[2].valid_until: must be after valid_from"),
    # references
    (_set(("fees", 1, "wallet"), "OVO"), "fees[1].wallet: unknown wallet 'OVO' (neither in wallets nor in the database)"),
    (_set(("fees", 1, "provider"), "XENIT"), "fees[1].provider: unknown provider 'XENIT' (neither in providers nor in the database)"),
    (_set(("cashback_rules", 2, "partner"), "BLAPAK"), "cashback_rules[2].partner: unknown partner 'BLAPAK' (neither in partners nor in the database)"),
    (_set(("rewards", 3, "tier"), "PLATINUM"), "rewards[3].tier: unknown tier 'PLATINUM' (not in tiers)"),
    # uniqueness and the ladder's shape
    (_set(("wallets", 1, "code"), "GPAID"), "wallets[1].code: duplicate of wallets[0]"),
    (_set(("fees", 2, "wallet"), "GPAID"), "fees[2].wallet: duplicate of fees[0]"),
    (_set(("tiers", 1, "rank"), 1), "tiers[1].rank: duplicate of tiers[0]"),
    (_set(("rewards", 2, "nth"), 5), "rewards[2].nth: duplicate of rewards[1]"),
    (_set(("tiers",), []), "tiers: must not be empty: purchases need an entry tier (rank 1)"),
    (lambda d: [t.update(rank=t["rank"] + 1) for t in d["tiers"]], "tiers: must include rank 1 (the entry tier)"),
    (_set(("tiers", 2, "promote_after"), 3), "tiers[2].promote_after: must be null on the top tier (there is no higher rank)"),
    (_set(("rewards", 0, "nth"), 6), "rewards[0].nth: BRONZE promotes after 5 purchases, so purchase 6 is never reached"),
    # the last section, after six valid ones
    (_set(("partners", 1, "code"), "tokmed"), "partners[1].code: must be 2 to 32 upper-case letters, digits or _"),
    (_set(("partners", 0, "email"), "ops@"), "partners[0].email: must be an email address or empty"),
    (_set(("partners", 0, "msisdn"), "08111000001"), 'partners[0].msisdn: must be empty or a mobile number in the 62… form, e.g. "628111000001"'),
    (_set(("partners", 1, "webhook_url"), "ftp://tokmed.example/"), "partners[1].webhook_url: must be an http(s) URL or null"),
]  # fmt: skip


@pytest.mark.parametrize("mutate, message", INVALID, ids=[m for _, m in INVALID])
def test_an_invalid_file_is_refused_with_its_path_and_changes_nothing(db, mutate, message):
    # given the configuration in place, and a file that would change every section but one error
    config_import(full())
    before = snapshot()
    data = _changed()
    mutate(data)
    # when
    with pytest.raises(ValidationFailed) as caught:
        config_import(data)
    # then
    assert caught.value.message == message
    assert snapshot() == before


def test_an_error_in_the_last_section_refuses_a_file_into_an_empty_database(db):
    data = full()
    data["partners"][1]["active"] = 1
    with pytest.raises(ValidationFailed) as caught:
        config_import(data)
    assert caught.value.message == "partners[1].active: must be true or false"
    assert all(not rows for rows in snapshot().values())


def test_every_error_is_listed_and_the_message_names_the_first(db):
    data = full()
    data["partners"][1]["code"] = "x"
    data["fees"][1]["percent_fee"] = 1
    data["wallets"][0]["name"] = ""
    with pytest.raises(ValidationFailed) as caught:
        config_import(data)
    assert caught.value.message == "wallets[0].name: must not be empty (and 2 more errors)"
    assert caught.value.fields == {
        "wallets[0].name": ["must not be empty"],
        "fees[1].percent_fee": [DECIMAL],
        "partners[1].code": ["must be 2 to 32 upper-case letters, digits or _"],
    }
    assert list(caught.value.fields) == ["wallets[0].name", "fees[1].percent_fee", "partners[1].code"]


def test_a_file_that_is_not_an_object_is_refused(db):
    with pytest.raises(ValidationFailed) as caught:
        config_import([])
    assert caught.value.message.startswith("(file): must be a JSON object")


# --- The command -----------------------------------------------------------------------------


def test_command_export_import_round_trip(db, tmp_path):
    config_import(full())
    path = tmp_path / "config.json"
    out = io.StringIO()
    call_command("cezbek_config", "export", str(path), "--json", stdout=out)
    assert json.loads(out.getvalue()) == {
        "file": str(path),
        "items": {"wallets": 2, "providers": 2, "fees": 3, "cashback_rules": 3, "tiers": 3, "rewards": 5, "partners": 2},
    }
    assert json.loads(path.read_text()) == config_export()
    stdout = io.StringIO()
    call_command("cezbek_config", "export", stdout=stdout)
    assert stdout.getvalue() == path.read_text()
    before = snapshot()
    out = io.StringIO()
    call_command("cezbek_config", "import", str(path), "--json", stdout=out)
    assert json.loads(out.getvalue()) == {section: ZERO for section in SECTIONS}
    assert snapshot() == before


def test_command_import_prints_counts(db, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(FULL))
    out = io.StringIO()
    call_command("cezbek_config", "import", str(path), stdout=out)
    assert out.getvalue().splitlines() == [
        "wallets         2 created, 0 updated, 0 archived",
        "providers       2 created, 0 updated, 0 archived",
        "fees            3 created, 0 updated, 0 archived",
        "cashback_rules  3 created, 0 updated, 0 archived",
        "tiers           3 created, 0 updated, 0 archived",
        "rewards         5 created, 0 updated, 0 archived",
        "partners        2 created, 0 updated, 0 archived",
    ]


def test_command_refuses_bad_input_with_one_line_and_changes_nothing(db, tmp_path):
    config_import(full())
    before = snapshot()
    bad = _changed()
    bad["cashback_rules"][2]["percentage"] = "0"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(CommandError) as caught:
        call_command("cezbek_config", "import", str(path))
    assert str(caught.value) == f"{path}: refused, nothing changed: cashback_rules[2].percentage: must be > 0 and ≤ 100"
    (tmp_path / "broken.json").write_text('{"wallets": [')
    with pytest.raises(CommandError, match=r"broken\.json: not valid JSON: Expecting value: line 1 column 14"):
        call_command("cezbek_config", "import", str(tmp_path / "broken.json"))
    (tmp_path / "twice.json").write_text('{"wallets": [{"code": "LSAJA", "name": "LinkSaja", "active": true, "active": false}]}')
    with pytest.raises(CommandError, match=r"twice\.json: not valid JSON: the key 'active' appears twice in one object$"):
        call_command("cezbek_config", "import", str(tmp_path / "twice.json"))
    with pytest.raises(CommandError, match=r"cannot read .*missing\.json: No such file or directory"):
        call_command("cezbek_config", "import", str(tmp_path / "missing.json"))
    with pytest.raises(CommandError, match="import needs a FILE"):
        call_command("cezbek_config", "import")
    assert snapshot() == before


def test_a_failed_export_leaves_no_temporary_file_behind(db, tmp_path):
    config_import(full())
    (tmp_path / "taken").mkdir()  # the target is a directory: the rename fails after the write
    with pytest.raises(CommandError, match=r"cannot write .*taken: Is a directory"):
        call_command("cezbek_config", "export", str(tmp_path / "taken"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # nothing beside it holds the configuration


@pytest.fixture
def shared_cache_down(settings):
    """The cache every process shares points at a port nothing listens on."""
    settings.CACHES = {
        **settings.CACHES,
        "down": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
        },
    }
    settings.SHARED_CACHE = "down"


def test_import_is_refused_and_changes_nothing_when_the_shared_cache_does_not_answer(db, tmp_path, shared_cache_down):
    before = snapshot()
    path = tmp_path / "config.json"
    path.write_text(json.dumps(FULL))
    with pytest.raises(CommandError) as caught:
        call_command("cezbek_config", "import", str(path))
    assert str(caught.value).startswith("the cache every process shares did not answer (")
    assert str(caught.value).endswith("): nothing changed") and "\n" not in str(caught.value)
    assert snapshot() == before
