from datetime import datetime
from decimal import Decimal

from django.db.models import F, Q, QuerySet

from cashback.models import CashbackRule, Transaction


def cashback_rule_matching(*, partner, quantity: int, amount: Decimal, at: datetime) -> CashbackRule | None:
    """The rule for a purchase (DOMAIN.md §1): partner-specific beats global, then higher %, then lower id.

    Bounds are inclusive, validity too (valid_from ≤ at ≤ valid_until); an empty max is unbounded.
    """
    return (
        CashbackRule.objects.filter(active=True, archived=False, valid_from__lte=at)
        .filter(Q(valid_until__isnull=True) | Q(valid_until__gte=at))
        .filter(Q(partner=partner) | Q(partner__isnull=True))
        .filter(min_quantity__lte=quantity)
        .filter(Q(max_quantity__isnull=True) | Q(max_quantity__gte=quantity))
        .filter(min_amount__lte=amount)
        .filter(Q(max_amount__isnull=True) | Q(max_amount__gte=amount))
        .order_by(F("partner_id").asc(nulls_last=True), "-percentage", "id")
        .first()
    )


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
