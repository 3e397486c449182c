"""`load_demo [--json]`: the demo configuration, applied through config_import (so idempotent).

Wallets LSAJA, GPAID, JOSVO. Providers: the three H2H links (priority 1, each reaching its own
wallet), MTRANS (aggregator, priority 2) and XENIT (aggregator, priority 3), both reaching all
three wallets. Fees, the same for every wallet, chosen so that the route depends on the payout:

    route          flat      percent   10,000 payout   50,000 payout   100,000 payout
    H2H            500.00    2.00 %         700.00        1,500.00        2,500.00
    XENIT          750.00    1.00 %         850.00        1,250.00        1,750.00
    MTRANS       1,500.00    0.00 %       1,500.00        1,500.00        1,500.00

so below 25,000 the H2H link wins (at 25,000 H2H and XENIT both cost 1,000.00 and H2H wins on
priority), from there to 75,000 XENIT wins, and above 75,000 MTRANS (at 75,000 XENIT and MTRANS
tie at 1,500.00 and MTRANS wins on priority).

Cashback rules, valid from 2024-01-01 (Jakarta), no end:
    Small basket    all partners   amount 0.00 – 499,999.99           1.00 %, cap   5,000.00
    Mid basket      all partners   amount 500,000.00 – 1,499,999.99   1.50 %, cap  20,000.00
    Large basket    all partners   amount from 1,500,000.00           2.00 %, cap 100,000.00
    TOKMED bulk     TOKMED only    quantity from 5, any amount        2.50 %, cap  50,000.00

The loyalty ladder and rewards are DOMAIN.md §2's demo ladder. Demo partners LAJADA, TOKMED and
BLAPAK. Like any import, it replaces the fee, rule, tier and reward sets with these (archiving
what differs) and resets the demo wallets, providers and partners to these values; it issues no
credentials (`partner_credentials` does).
"""

import json

from django.core.management.base import BaseCommand, CommandError

from cezbek.configuration import config_import
from cezbek.errors import ValidationFailed
from cezbek.snapshots import NotShared

VALID_FROM = "2024-01-01T00:00:00+07:00"

WALLETS = [("LSAJA", "LinkSaja"), ("GPAID", "GoPaid"), ("JOSVO", "Josvo")]
H2H = [("LSAJAH2H", "LinkSaja H2H", "LSAJA"), ("GOPAIDH2H", "GoPaid H2H", "GPAID"), ("JOSVOH2H", "Josvo H2H", "JOSVO")]
AGGREGATORS = [("MTRANS", "Middletrans", 2, "1500.00", "0.00"), ("XENIT", "Xenit", 3, "750.00", "1.00")]
H2H_FEE = ("500.00", "2.00")


def _rule(name, *, partner=None, min_quantity=1, min_amount="0.00", max_amount=None, percentage, max_cashback):
    return {
        "name": name,
        "partner": partner,
        "min_quantity": min_quantity,
        "max_quantity": None,
        "min_amount": min_amount,
        "max_amount": max_amount,
        "percentage": percentage,
        "max_cashback": max_cashback,
        "valid_from": VALID_FROM,
        "valid_until": None,
        "active": True,
    }


def demo_config() -> dict:
    """The demo configuration in the `cezbek_config` file shape."""
    fees = [
        {"provider": code, "wallet": wallet, "flat_fee": H2H_FEE[0], "percent_fee": H2H_FEE[1], "active": True}
        for code, _, wallet in H2H
    ]
    fees += [
        {"provider": code, "wallet": wallet, "flat_fee": flat, "percent_fee": percent, "active": True}
        for code, _, _, flat, percent in AGGREGATORS
        for wallet, _ in WALLETS
    ]
    return {
        "wallets": [{"code": code, "name": name, "active": True} for code, name in WALLETS],
        "providers": [
            {"code": code, "name": name, "kind": "h2h", "priority": 1, "active": True} for code, name, _ in H2H
        ]
        + [
            {"code": code, "name": name, "kind": "aggregator", "priority": priority, "active": True}
            for code, name, priority, _, _ in AGGREGATORS
        ],
        "fees": fees,
        "cashback_rules": [
            _rule("Small basket", max_amount="499999.99", percentage="1.00", max_cashback="5000.00"),
            _rule("Mid basket", min_amount="500000.00", max_amount="1499999.99", percentage="1.50", max_cashback="20000.00"),
            _rule("Large basket", min_amount="1500000.00", percentage="2.00", max_cashback="100000.00"),
            _rule("TOKMED bulk", partner="TOKMED", min_quantity=5, percentage="2.50", max_cashback="50000.00"),
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
            {
                "code": code,
                "name": name,
                "email": f"ops@{code.lower()}.id",
                "msisdn": msisdn,
                "officer": officer,
                "address": city,
                "webhook_url": None,
                "active": True,
            }
            for code, name, msisdn, officer, city in [
                ("LAJADA", "Lajada", "628111000001", "Rina", "Jakarta"),
                ("TOKMED", "Tokmed", "628111000002", "Budi", "Bandung"),
                ("BLAPAK", "Blapak", "628111000003", "Sari", "Surabaya"),
            ]
        ],
    }


class Command(BaseCommand):
    help = "Loads the demo partners, wallets, providers, fees, cashback rules and tier ladder; safe to run again."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", dest="as_json", help="print the import counts as JSON")

    def handle(self, *args, as_json, **options):
        try:
            counts = config_import(demo_config())
        except ValidationFailed as error:  # only if the database holds something the demo cannot replace
            raise CommandError(f"demo configuration refused, nothing changed: {error.message}") from None
        except NotShared as error:
            raise CommandError(str(error)) from None
        if as_json:
            self.stdout.write(json.dumps(counts))
            return
        created = sum(n["created"] + n["updated"] + n["archived"] for n in counts.values())
        if not created:
            self.stdout.write("demo data already loaded: nothing changed")
            return
        for section, n in counts.items():
            self.stdout.write(f"{section:15} {n['created']} created, {n['updated']} updated, {n['archived']} archived")
