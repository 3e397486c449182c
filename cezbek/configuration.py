"""Configuration as code (OPERATIONS.md "Configuration as code"): the whole business configuration
as one JSON document, exported and imported for environment promotion, tests and the demo.

Wallets, providers and partners are upserted by code and never removed by an import. Fees,
cashback rules, tiers and rewards are replaced as whole sets: a live row identical to an incoming
item is kept untouched (same id), every other live row is archived (never deleted: transactions
keep the rule, tier and fee they were computed with) and every unmatched item becomes a new row.
So `config_import(config_export())` writes nothing at all.

An import validates every present section completely, then writes everything in one database
transaction; an invalid file is refused with a ValidationFailed naming the first error's path.
"""

from __future__ import annotations

import re
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator, URLValidator
from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone

from cashback.models import CashbackRule
from cezbek.errors import ValidationFailed
from cezbek.snapshots import config_changed
from loyalty.models import LoyaltyState, RewardRule, TierLevel
from partners.models import Partner, msisdn_validator, partner_code_validator
from wallets.models import Fee, Provider, Wallet, code_validator

SECTIONS = ("wallets", "providers", "fees", "cashback_rules", "tiers", "rewards", "partners")
UPSERTED = ("wallets", "providers", "partners")  # by code; never archived by an import

CENT = Decimal("0.01")
MAX_MONEY = Decimal("999999999999.99")  # DecimalField(max_digits=14, decimal_places=2)
MAX_INT = 2**31 - 1  # PositiveIntegerField on every supported database
# Serialises imports on PostgreSQL (SQLite serialises writers by itself): two imports validated
# against the same database state must not both apply.
_ADVISORY_LOCK_KEY = 0x43455A424B  # "CEZBK"


def config_export() -> dict:
    """The live configuration in the OPERATIONS.md shape: money as 2-place strings, datetimes with offset."""
    return {
        "wallets": [
            {"code": w.code, "name": w.name, "active": w.active} for w in Wallet.objects.order_by("code")
        ],
        "providers": [
            {"code": p.code, "name": p.name, "kind": p.kind, "priority": p.priority, "active": p.active}
            for p in Provider.objects.order_by("code")
        ],
        "fees": [
            {
                "provider": f.provider.code,
                "wallet": f.wallet.code,
                "flat_fee": _money(f.flat_fee),
                "percent_fee": _money(f.percent_fee),
                "active": f.active,
            }
            for f in Fee.objects.filter(archived=False)
            .select_related("provider", "wallet")
            .order_by("wallet__code", "provider__code", "id")
        ],
        "cashback_rules": [
            {
                "name": r.name,
                "partner": r.partner.code if r.partner_id else None,
                "min_quantity": r.min_quantity,
                "max_quantity": r.max_quantity,
                "min_amount": _money(r.min_amount),
                "max_amount": _money(r.max_amount),
                "percentage": _money(r.percentage),
                "max_cashback": _money(r.max_cashback),
                "valid_from": _moment(r.valid_from),
                "valid_until": _moment(r.valid_until),
                "active": r.active,
            }
            # By id: the last tie-break between matching rules (DOMAIN.md §1), so the file reads in that order.
            for r in CashbackRule.objects.filter(archived=False).select_related("partner").order_by("id")
        ],
        "tiers": [
            {"name": t.name, "rank": t.rank, "promote_after": t.promote_after, "validity_days": t.validity_days}
            for t in TierLevel.objects.filter(archived=False).order_by("rank")
        ],
        "rewards": [
            {"tier": r.tier.name, "nth": r.nth, "reward": _money(r.reward)}
            for r in _live_rewards().order_by("tier__rank", "nth", "id")
        ],
        "partners": [
            {
                "code": p.code,
                "name": p.name,
                "email": p.email,
                "msisdn": p.msisdn,
                "officer": p.officer,
                "address": p.address,
                "webhook_url": p.webhook_url,
                "active": p.active,
            }
            for p in Partner.objects.order_by("code")
        ],
    }


def config_import(data: dict) -> dict:
    """Validates every present section, then applies the file in one transaction.

    Returns {section: {"created": n, "updated": n, "archived": n}} for all seven sections
    (a section absent from the file reports zeros, except rewards carried over to replaced tiers).
    Raises ValidationFailed, naming the first error's path, and writes nothing, on an invalid file.
    """
    with transaction.atomic():
        config_changed()  # archiving uses .update(): no signal fires for it
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_ADVISORY_LOCK_KEY])
        plan = _validate(data)
        return _apply(plan)


# --- Formatting -----------------------------------------------------------------------------


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value.quantize(CENT))


def _moment(value: datetime | None) -> str | None:
    return None if value is None else timezone.localtime(value).isoformat()


def _live_rewards():
    # A reward belongs to the live set only while its tier is live too.
    return RewardRule.objects.filter(archived=False, tier__archived=False).select_related("tier")


# --- Field parsers: each returns the parsed value or raises _Invalid with the message ----------


class _Invalid(Exception):
    pass


Parser = Callable[[Any], Any]


def _or_null(parse: Parser) -> Parser:
    def parse_nullable(value: Any) -> Any:
        if value is None:
            return None
        try:
            return parse(value)
        except _Invalid as error:
            raise _Invalid(f"{error} or null") from None

    return parse_nullable


def _boolean(value: Any) -> bool:
    if type(value) is not bool:
        raise _Invalid("must be true or false")
    return value


def _integer(low: int) -> Parser:
    def parse(value: Any) -> int:
        # bool is an int in Python; JSON true is not a number.
        if type(value) is not int or not low <= value <= MAX_INT:
            raise _Invalid(f"must be an integer ≥ {low}")
        return value

    return parse


_DECIMAL = re.compile(r"^-?[0-9]+(\.[0-9]{1,2})?$")


def _decimal(*, low: Decimal, high: Decimal, low_open: bool = False) -> Parser:
    bound = f"must be {'>' if low_open else '≥'} {low:f} and ≤ {high:f}"

    def parse(value: Any) -> Decimal:
        # Strings only: a JSON number would pass through a float on most producers.
        if not isinstance(value, str) or not _DECIMAL.match(value):
            raise _Invalid('must be a string holding a decimal with at most 2 places, e.g. "1500.00"')
        amount = Decimal(value)
        if amount < low or (low_open and amount == low) or amount > high:
            raise _Invalid(bound)
        return amount

    return parse


def _text(max_length: int | None, *, blank: bool = False) -> Parser:
    def parse(value: Any) -> str:
        if not isinstance(value, str):
            raise _Invalid("must be a string")
        if not blank and not value.strip():
            raise _Invalid("must not be empty")
        if max_length is not None and len(value) > max_length:
            raise _Invalid(f"must be at most {max_length} characters")
        if "\x00" in value:  # PostgreSQL's text cannot hold it; SQLite's would, and export it again
            raise _Invalid("must not contain NUL characters")
        return value

    return parse


def _code(value: Any) -> str:
    """A wallet's or provider's code, by the admin's rule too (wallets.models.code_validator)."""
    if not isinstance(value, str) or not code_validator.regex.match(value):
        raise _Invalid("must be 2 to 16 upper-case letters, digits or _")
    return value


def _partner_code(value: Any) -> str:
    if not isinstance(value, str) or not partner_code_validator.regex.match(value):
        raise _Invalid("must be 2 to 32 upper-case letters, digits or _")
    return value


def _choice(*choices: str) -> Parser:
    def parse(value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise _Invalid("must be one of " + ", ".join(f'"{c}"' for c in choices))
        return value

    return parse


def _moment_parse(value: Any) -> datetime:
    if not isinstance(value, str):
        raise _Invalid('must be an ISO 8601 datetime with an offset, e.g. "2024-01-01T00:00:00+07:00"')
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _Invalid('must be an ISO 8601 datetime with an offset, e.g. "2024-01-01T00:00:00+07:00"') from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise _Invalid("must carry a UTC offset (e.g. +07:00 or Z)")
    return moment


def _email(value: Any) -> str:
    value = _text(254, blank=True)(value)
    if value:
        try:
            EmailValidator()(value)
        except ValidationError:
            raise _Invalid("must be an email address or empty") from None
    return value


_MSISDN = msisdn_validator.regex  # the admin's rule too (partners.models)


def _msisdn(value: Any) -> str:
    # Stored form only (62…, digits, 10 to 15 in all), so that export → import is exact.
    if not isinstance(value, str) or (value and not _MSISDN.match(value)):
        raise _Invalid('must be empty or a mobile number in the 62… form, e.g. "628111000001"')
    return value


def _url(value: Any) -> str:
    value = _text(200, blank=True)(value)
    if value == "":
        return value  # what a blank form field may have stored: no webhook, like null
    try:
        URLValidator(schemes=["http", "https"])(value)
    except ValidationError:
        raise _Invalid("must be an http(s) URL") from None
    return value


_MONEY = _decimal(low=Decimal("0"), high=MAX_MONEY)

FIELDS: dict[str, dict[str, Parser]] = {
    "wallets": {"code": _code, "name": _text(100), "active": _boolean},
    "providers": {
        "code": _code,
        "name": _text(100),
        "kind": _choice(*Provider.Kind.values),
        "priority": _integer(0),
        "active": _boolean,
    },
    "fees": {
        "provider": _code,
        "wallet": _code,
        "flat_fee": _MONEY,
        "percent_fee": _decimal(low=Decimal("0"), high=Decimal("100")),
        "active": _boolean,
    },
    "cashback_rules": {
        "name": _text(200),
        "partner": _or_null(_partner_code),
        "min_quantity": _integer(1),
        "max_quantity": _or_null(_integer(1)),
        "min_amount": _MONEY,
        "max_amount": _or_null(_MONEY),
        "percentage": _decimal(low=Decimal("0"), high=Decimal("100"), low_open=True),
        "max_cashback": _or_null(_MONEY),
        "valid_from": _moment_parse,
        "valid_until": _or_null(_moment_parse),
        "active": _boolean,
    },
    "tiers": {
        "name": _text(32),
        "rank": _integer(1),
        "promote_after": _or_null(_integer(1)),
        "validity_days": _or_null(_integer(1)),
    },
    "rewards": {"tier": _text(32), "nth": _integer(1), "reward": _decimal(low=Decimal("0"), high=MAX_MONEY, low_open=True)},
    "partners": {
        "code": _partner_code,
        "name": _text(200),
        "email": _email,
        "msisdn": _msisdn,
        "officer": _text(200, blank=True),
        "address": _text(None, blank=True),
        "webhook_url": _or_null(_url),
        "active": _boolean,
    },
}


# --- Validation ------------------------------------------------------------------------------


@dataclass
class _Plan:
    """A validated file: each present section's items, parsed, in file order."""

    sections: dict[str, list[dict]] = field(default_factory=dict)
    # Rewards to keep when tiers are replaced and the file has no rewards section: (tier name, nth, reward).
    carried_rewards: list[dict] | None = None


class _Errors:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.items.append((path, message))

    def raise_if_any(self) -> None:
        if not self.items:
            return
        path, message = self.items[0]
        more = len(self.items) - 1
        text = f"{path}: {message}" + (f" (and {more} more error{'s' if more > 1 else ''})" if more else "")
        fields: dict[str, list[str]] = {}
        for p, m in self.items:
            fields.setdefault(p, []).append(m)
        raise ValidationFailed(text, fields=fields)


def _validate(data: Any) -> _Plan:
    """Every check, in section order, before anything is written; raises ValidationFailed."""
    errors = _Errors()
    if not isinstance(data, dict):
        errors.add("(file)", "must be a JSON object with the sections " + ", ".join(SECTIONS))
        errors.raise_if_any()
    for key in data:
        if key not in SECTIONS:
            errors.add(str(key), "unknown section (expected " + ", ".join(SECTIONS) + ")")

    plan = _Plan()
    raw_codes: dict[str, set[str]] = {}
    for section in SECTIONS:
        if section not in data:
            continue
        items = data[section]
        if not isinstance(items, list):
            errors.add(section, "must be a list")
            continue
        parsed = [_parse_item(errors, f"{section}[{i}]", FIELDS[section], item) for i, item in enumerate(items)]
        plan.sections[section] = parsed  # holds None for an item with errors
        if section in UPSERTED:
            raw_codes[section] = {i.get("code") for i in items if isinstance(i, dict) and isinstance(i.get("code"), str)}

    known = {
        "wallets": raw_codes.get("wallets", set()) | set(Wallet.objects.values_list("code", flat=True)),
        "providers": raw_codes.get("providers", set()) | set(Provider.objects.values_list("code", flat=True)),
        "partners": raw_codes.get("partners", set()) | set(Partner.objects.values_list("code", flat=True)),
    }
    for section in UPSERTED:
        _check_unique(errors, section, plan.sections.get(section), ("code",), "code")
    _check_fees(errors, plan.sections.get("fees"), known)
    _check_cashback_rules(errors, plan.sections.get("cashback_rules"), known)
    tiers = _check_tiers(errors, plan.sections.get("tiers"), data.get("tiers"))
    _check_rewards(errors, plan.sections.get("rewards"), tiers)
    # Errors are reported in section order, then item order, whichever check found them.
    order = {section: n for n, section in enumerate(SECTIONS)}
    errors.items.sort(key=lambda e: _error_sort_key(e[0], order))
    errors.raise_if_any()

    if "tiers" in plan.sections:
        _check_tier_removal(errors, plan.sections["tiers"])
        errors.raise_if_any()
        if "rewards" not in plan.sections:
            names = {t["name"] for t in plan.sections["tiers"]}
            plan.carried_rewards = [
                {"tier": r.tier.name, "nth": r.nth, "reward": r.reward}
                for r in _live_rewards().order_by("id")
                if r.tier.name in names
            ]
    return plan


_INDEX = re.compile(r"^([a-z_]+)(?:\[(\d+)\])?")


def _error_sort_key(path: str, order: dict[str, int]) -> tuple[int, int]:
    match = _INDEX.match(path)
    if not match or match.group(1) not in order:
        return (-1, -1)  # the file itself, or an unknown section
    return (order[match.group(1)], int(match.group(2)) if match.group(2) is not None else -1)


def _parse_item(errors: _Errors, path: str, fields: dict[str, Parser], item: Any) -> dict | None:
    if not isinstance(item, dict):
        errors.add(path, "must be an object")
        return None
    before = len(errors.items)
    parsed: dict[str, Any] = {}
    # Every key is required: an omitted key would otherwise silently reset a value.
    for key, parse in fields.items():
        if key not in item:
            errors.add(f"{path}.{key}", "required")
            continue
        try:
            parsed[key] = parse(item[key])
        except _Invalid as error:
            errors.add(f"{path}.{key}", str(error))
    for key in item:
        if key not in fields:
            errors.add(f"{path}.{key}", "unknown key (expected " + ", ".join(fields) + ")")
    return parsed if len(errors.items) == before else None


def _check_unique(errors: _Errors, section: str, items: list | None, keys: tuple[str, ...], where: str) -> None:
    seen: dict[tuple, int] = {}
    for i, item in enumerate(items or []):
        if item is None:
            continue
        value = tuple(item[k] for k in keys)
        if value in seen:
            errors.add(f"{section}[{i}].{where}", f"duplicate of {section}[{seen[value]}]")
        else:
            seen[value] = i


def _check_fees(errors: _Errors, fees: list | None, known: dict[str, set[str]]) -> None:
    if fees is None:
        return
    _check_unique(errors, "fees", fees, ("provider", "wallet"), "wallet")
    for i, fee in enumerate(fees):
        if fee is None:
            continue
        for key, section in (("provider", "providers"), ("wallet", "wallets")):
            if fee[key] not in known[section]:
                errors.add(f"fees[{i}].{key}", f"unknown {key} {fee[key]!r} (neither in {section} nor in the database)")


def _check_cashback_rules(errors: _Errors, rules: list | None, known: dict[str, set[str]]) -> None:
    for i, rule in enumerate(rules or []):
        if rule is None:
            continue
        path = f"cashback_rules[{i}]"
        if rule["partner"] is not None and rule["partner"] not in known["partners"]:
            errors.add(f"{path}.partner", f"unknown partner {rule['partner']!r} (neither in partners nor in the database)")
        if rule["max_quantity"] is not None and rule["max_quantity"] < rule["min_quantity"]:
            errors.add(f"{path}.max_quantity", "must be ≥ min_quantity")
        if rule["max_amount"] is not None and rule["max_amount"] < rule["min_amount"]:
            errors.add(f"{path}.max_amount", "must be ≥ min_amount")
        if rule["valid_until"] is not None and rule["valid_until"] <= rule["valid_from"]:
            errors.add(f"{path}.valid_until", "must be after valid_from")


@dataclass(frozen=True)
class _TierView:
    """What rewards are checked against: the file's tiers, or the live ones when the file has none."""

    names: dict[str, int | None]  # name -> last reachable purchase count in the tier (None: unbounded)
    source: str  # for messages
    invalid: frozenset[str] = frozenset()  # names of tier items with errors: already reported


def _check_tiers(errors: _Errors, tiers: list | None, raw: list | None) -> _TierView | None:
    if tiers is None:
        live = list(TierLevel.objects.filter(archived=False))
        return _TierView(_reachable(live, lambda t: (t.name, t.rank, t.promote_after)), "live tiers")
    if not tiers:
        errors.add("tiers", "must not be empty: purchases need an entry tier (rank 1)")
        return None
    _check_unique(errors, "tiers", tiers, ("name",), "name")
    _check_unique(errors, "tiers", tiers, ("rank",), "rank")
    valid = [(i, t) for i, t in enumerate(tiers) if t is not None]
    if len(valid) == len(tiers):
        if not any(t["rank"] == 1 for t in tiers):
            errors.add("tiers", "must include rank 1 (the entry tier)")
        i, top = max(valid, key=lambda pair: pair[1]["rank"])
        if top["promote_after"] is not None:
            errors.add(f"tiers[{i}].promote_after", "must be null on the top tier (there is no higher rank)")
    invalid = frozenset(
        r["name"] for r, t in zip(raw or [], tiers) if t is None and isinstance(r, dict) and isinstance(r.get("name"), str)
    )
    names = _reachable([t for _, t in valid], lambda t: (t["name"], t["rank"], t["promote_after"]))
    return _TierView(names, "tiers", invalid)


def _reachable(tiers: list, fields: Callable) -> dict[str, int | None]:
    """Tier name -> the last purchase count reachable in it (None: unbounded, as on the top tier)."""
    top = max((fields(t)[1] for t in tiers), default=None)
    return {name: (promote_after if rank != top else None) for name, rank, promote_after in map(fields, tiers)}


def _check_rewards(errors: _Errors, rewards: list | None, tiers: _TierView | None) -> None:
    if rewards is None:
        return
    _check_unique(errors, "rewards", rewards, ("tier", "nth"), "nth")
    if tiers is None:
        return  # the tiers section is itself invalid; its errors come first
    for i, reward in enumerate(rewards):
        if reward is None:
            continue
        if reward["tier"] in tiers.invalid:
            continue
        if reward["tier"] not in tiers.names:
            errors.add(f"rewards[{i}].tier", f"unknown tier {reward['tier']!r} (not in {tiers.source})")
            continue
        last = tiers.names[reward["tier"]]
        if last is not None and reward["nth"] > last:
            errors.add(
                f"rewards[{i}].nth",
                f"{reward['tier']} promotes after {last} purchases, so purchase {reward['nth']} is never reached",
            )


def _check_tier_removal(errors: _Errors, tiers: list[dict]) -> None:
    """Customers on a tier the file replaces move to the new tier of that name, else of that rank."""
    _, _, archived = _diff(_live_tiers(), _tier_row_key, tiers, _tier_item_key)
    if not archived:
        return
    names = {t["name"] for t in tiers}
    ranks = {t["rank"] for t in tiers}
    customers = dict(
        LoyaltyState.objects.filter(tier__in=archived).values("tier").annotate(n=Count("id")).values_list("tier", "n")
    )
    for tier in archived:
        n = customers.get(tier.id, 0)
        if n and tier.name not in names and tier.rank not in ranks:
            errors.add(
                "tiers",
                f"{n} customer(s) are on {tier.name} (rank {tier.rank}), which this file removes; "
                f"keep a tier named {tier.name} or with rank {tier.rank}",
            )


# --- Set replacement -------------------------------------------------------------------------


def _diff(rows: Iterable, row_key: Callable, items: list[dict], item_key: Callable) -> tuple[list, list, list]:
    """Pairs each item with an identical live row (lowest id first): (kept, to create, to archive)."""
    pool: dict[tuple, deque] = defaultdict(deque)
    for row in rows:
        pool[row_key(row)].append(row)
    kept, create = [], []
    for item in items:
        same = pool.get(item_key(item))
        if same:
            kept.append((item, same.popleft()))
        else:
            create.append(item)
    archive = [row for rows_left in pool.values() for row in rows_left]
    return kept, create, archive


def _live_tiers():
    return TierLevel.objects.filter(archived=False).order_by("id")


def _tier_row_key(t: TierLevel) -> tuple:
    return (t.name, t.rank, t.promote_after, t.validity_days)


def _tier_item_key(t: dict) -> tuple:
    return (t["name"], t["rank"], t["promote_after"], t["validity_days"])


_FEE_KEYS = ("flat_fee", "percent_fee", "active")
_RULE_KEYS = (
    "name", "min_quantity", "max_quantity", "min_amount", "max_amount", "percentage",
    "max_cashback", "valid_from", "valid_until", "active",
)  # fmt: skip


def _counts() -> dict[str, dict[str, int]]:
    return {section: {"created": 0, "updated": 0, "archived": 0} for section in SECTIONS}


def _apply(plan: _Plan) -> dict:
    counts = _counts()
    s = plan.sections
    if "wallets" in s:
        _upsert(Wallet, s["wallets"], ("name", "active"), counts["wallets"])
    if "providers" in s:
        _upsert(Provider, s["providers"], ("name", "kind", "priority", "active"), counts["providers"])
    if "partners" in s:
        fields = ("name", "email", "msisdn", "officer", "address", "webhook_url", "active")
        _upsert(Partner, s["partners"], fields, counts["partners"])

    if "fees" in s:
        live = Fee.objects.filter(archived=False).select_related("provider", "wallet").order_by("id")
        _, create, archive = _diff(
            live,
            lambda f: (f.provider.code, f.wallet.code) + tuple(getattr(f, k) for k in _FEE_KEYS),
            s["fees"],
            lambda i: (i["provider"], i["wallet"]) + tuple(i[k] for k in _FEE_KEYS),
        )
        _archive(Fee, archive, counts["fees"])  # first: one live fee per route
        wallets = {w.code: w for w in Wallet.objects.all()}
        providers = {p.code: p for p in Provider.objects.all()}
        for item in create:
            Fee.objects.create(
                provider=providers[item["provider"]], wallet=wallets[item["wallet"]], **{k: item[k] for k in _FEE_KEYS}
            )
        counts["fees"]["created"] = len(create)

    if "cashback_rules" in s:
        live = CashbackRule.objects.filter(archived=False).select_related("partner").order_by("id")
        _, create, archive = _diff(
            live,
            lambda r: (r.partner.code if r.partner_id else None,) + tuple(getattr(r, k) for k in _RULE_KEYS),
            s["cashback_rules"],
            lambda i: (i["partner"],) + tuple(i[k] for k in _RULE_KEYS),
        )
        _archive(CashbackRule, archive, counts["cashback_rules"])
        partners = {p.code: p for p in Partner.objects.all()}
        for item in create:
            CashbackRule.objects.create(
                partner=partners[item["partner"]] if item["partner"] else None, **{k: item[k] for k in _RULE_KEYS}
            )
        counts["cashback_rules"]["created"] = len(create)

    if "tiers" in s:
        _apply_tiers(s["tiers"], counts["tiers"])
    rewards = s.get("rewards", plan.carried_rewards)
    if rewards is not None:
        _apply_rewards(rewards, counts["rewards"])
    return counts


def _upsert(model, items: list[dict], fields: tuple[str, ...], counts: dict[str, int]) -> None:
    existing = {row.code: row for row in model.objects.filter(code__in=[i["code"] for i in items])}
    for item in items:
        row = existing.get(item["code"])
        if row is None:
            model.objects.create(code=item["code"], **{k: item[k] for k in fields})
            counts["created"] += 1
        elif any(getattr(row, k) != item[k] for k in fields):
            for k in fields:
                setattr(row, k, item[k])
            row.save(update_fields=list(fields))
            counts["updated"] += 1


def _archive(model, rows: list, counts: dict[str, int]) -> None:
    if rows:
        counts["archived"] += model.objects.filter(id__in=[r.id for r in rows], archived=False).update(archived=True)


def _apply_tiers(items: list[dict], counts: dict[str, int]) -> None:
    _, create, archive = _diff(_live_tiers(), _tier_row_key, items, _tier_item_key)
    _archive(TierLevel, archive, counts)  # first: live names and ranks are unique
    for item in create:
        TierLevel.objects.create(**item)
    counts["created"] = len(create)
    if not archive:
        return
    # A loyalty state is where a customer stands now, not history: it follows its tier to the
    # row that replaces it (same name, else same rank; _check_tier_removal made sure one exists),
    # keeping count and dates. Journey entries and transactions keep the archived tier.
    live = list(TierLevel.objects.filter(archived=False))
    by_name = {t.name: t for t in live}
    by_rank = {t.rank: t for t in live}
    for old in archive:
        new = by_name.get(old.name) or by_rank.get(old.rank)
        if new is not None:
            LoyaltyState.objects.filter(tier_id=old.id).update(tier_id=new.id)
    # Rewards of an archived tier are history with it; _apply_rewards re-creates the ones still wanted.


def _apply_rewards(items: list[dict], counts: dict[str, int]) -> None:
    tiers = {t.name: t for t in TierLevel.objects.filter(archived=False)}
    # Every unarchived reward, including those of tiers archived just now, is compared.
    live = RewardRule.objects.filter(archived=False).order_by("id")
    _, create, archive = _diff(
        live,
        lambda r: (r.tier_id, r.nth, r.reward),
        items,
        lambda i: (tiers[i["tier"]].id, i["nth"], i["reward"]),
    )
    _archive(RewardRule, archive, counts)
    for item in create:
        RewardRule.objects.create(tier=tiers[item["tier"]], nth=item["nth"], reward=item["reward"])
    counts["created"] = len(create)
