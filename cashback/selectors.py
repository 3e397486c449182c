from datetime import datetime
from decimal import Decimal

from django.db.models import QuerySet

from cashback.models import CashbackRule, Transaction
from cezbek.snapshots import cached


def cashback_rule_matching(*, partner, quantity: int, amount: Decimal, at: datetime) -> CashbackRule | None:
    """The rule for a purchase (DOMAIN.md §1): partner-specific beats global, then higher %, then lower id.

    Bounds are inclusive, validity too (valid_from ≤ at ≤ valid_until); an empty max is unbounded.
    """
    matching = [
        rule
        for rule in cached("cashback_rules", _live_rules)
        if (rule.partner_id is None or rule.partner_id == partner.pk)
        and rule.valid_from <= at
        and (rule.valid_until is None or at <= rule.valid_until)
        and rule.min_quantity <= quantity
        and (rule.max_quantity is None or quantity <= rule.max_quantity)
        and rule.min_amount <= amount
        and (rule.max_amount is None or amount <= rule.max_amount)
    ]
    if not matching:
        return None
    return min(matching, key=lambda rule: (rule.partner_id is None, -rule.percentage, rule.id))


def _live_rules() -> list[CashbackRule]:
    return list(CashbackRule.objects.filter(active=True, archived=False).order_by("id"))


def transaction_documents() -> QuerySet[Transaction]:
    """Transactions with everything their API document shows, in one query."""
    return Transaction.objects.select_related("wallet", "tier", "payout", "payout__provider")


def partner_transaction(*, partner, kezbek_ref: str) -> Transaction | None:
    return transaction_documents().filter(partner=partner, kezbek_ref=kezbek_ref).first()


def partner_transactions(
    *,
    partner,
    msisdn: str | None = None,
    status: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> QuerySet[Transaction]:
    """The partner's own transactions, filtered; newest first. `status` is the payout's state, or NONE."""
    qs = transaction_documents().filter(partner=partner)
    if msisdn:
        qs = qs.filter(msisdn=msisdn)
    if status == "NONE":
        qs = qs.filter(payout__isnull=True)
    elif status:
        qs = qs.filter(payout__status=status)
    if created_from:
        qs = qs.filter(created_at__gte=created_from)
    if created_to:
        qs = qs.filter(created_at__lte=created_to)
    return qs.order_by("-id")
