"""Recording purchases (DOMAIN.md §1–3): one database transaction per accepted purchase."""

from __future__ import annotations

import base64
import logging
import secrets
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from cashback.models import Transaction
from cashback.selectors import cashback_rule_matching
from cezbek import sql
from cezbek.errors import Conflict, UnknownWallet
from loyalty.models import TierLevel
from loyalty.rules import Standing
from loyalty.services import loyalty_ladder, loyalty_plan_writes, loyalty_purchase_plan, loyalty_state_lock
from wallets.selectors import wallet_active, wallet_known
from wallets.services import payout_announce, payout_writes, velocity_statements, velocity_total

logger = logging.getLogger("cezbek.cashback")

CENT = Decimal("0.01")
ZERO = Decimal("0.00")


@dataclass(frozen=True)
class Purchase:
    """A validated, normalised purchase as a partner posted it."""

    partner_ref: str
    msisdn: str
    quantity: int
    amount: Decimal
    wallet: str
    email: str = ""


def cashback_compute(*, amount: Decimal, percentage: Decimal, cap: Decimal | None) -> Decimal:
    """amount × percentage / 100, half-up to the cent, then capped."""
    cashback = (amount * percentage / Decimal(100)).quantize(CENT, rounding=ROUND_HALF_UP)
    if cap is not None and cashback > cap:
        cashback = cap
    return cashback


def kezbek_ref_new() -> str:
    """120 random bits, base32: unique by construction (and by the database's unique constraint)."""
    return "KZ" + base64.b32encode(secrets.token_bytes(15)).decode()


def same_purchase(existing: Transaction, purchase: Purchase, wallet_id: int) -> bool:
    return (
        existing.msisdn == purchase.msisdn
        and existing.quantity == purchase.quantity
        and existing.amount == purchase.amount
        and existing.wallet_id == wallet_id
        and existing.email == purchase.email
    )


def transaction_record(*, partner, purchase: Purchase) -> tuple[Transaction, bool]:
    """Records a purchase with its cashback, loyalty and payout; returns (transaction, created).

    A repeat of the same partner_ref with the same content returns the stored transaction;
    with different content it raises Conflict. Concurrent duplicates resolve to one transaction:
    the database's unique constraint decides, and the losers read the winner's row.
    """
    wallet = wallet_active(code=purchase.wallet)
    if wallet is None:
        # A repeat gets the stored result even when its wallet was deactivated since (DOMAIN.md §3);
        # only a new purchase is refused for its wallet.
        existing = transaction_repeated(partner=partner, purchase=purchase, wallet_id=wallet_id_of(purchase))
        if existing is None:
            raise unknown_wallet(purchase)
        return existing, False
    for _ in range(3):
        try:
            return _transaction_insert(partner=partner, purchase=purchase, wallet=wallet), True
        except IntegrityError:
            pass
        existing = transaction_repeated(partner=partner, purchase=purchase, wallet_id=wallet.id)
        if existing is not None:
            return existing, False
        # no transaction holds this partner_ref: a kezbek_ref collision (2^-120), drawn again
    raise IntegrityError("could not allocate a kezbek_ref")


def transaction_repeated(*, partner, purchase: Purchase, wallet_id: int | None) -> Transaction | None:
    """The stored transaction this purchase repeats; None when its partner_ref is new. The same
    partner_ref with other content raises Conflict."""
    existing = Transaction.objects.filter(partner=partner, partner_ref=purchase.partner_ref).first()
    if existing is not None and not same_purchase(existing, purchase, wallet_id):
        raise partner_ref_conflict(purchase.partner_ref)
    return existing


def partner_ref_conflict(partner_ref: str) -> Conflict:
    return Conflict(f"partner_ref {partner_ref!r} was already used for a different purchase.")


def unknown_wallet(purchase: Purchase) -> UnknownWallet:
    return UnknownWallet.for_field("wallet", f"Unknown or inactive wallet {purchase.wallet!r}.")


def wallet_id_of(purchase: Purchase) -> int | None:
    """The id of the purchase's wallet, active or not; None for a code no wallet has."""
    wallet = wallet_known(code=purchase.wallet)
    return None if wallet is None else wallet.id


def _transaction_insert(*, partner, purchase: Purchase, wallet) -> Transaction:
    """One purchase's database work, in four round trips on PostgreSQL (BEGIN; lock; write; COMMIT).

    The lock: the customer's loyalty state (created at a first purchase) under a row lock, so
    purchases of one customer run one at a time; then the MSISDN's velocity lock and window total
    (payouts across partners). The write: the transaction, the journey, the state, the payout and
    its event in one statement (`sql.insert_chain`).
    """
    now = timezone.now()
    ladder = loyalty_ladder()
    # One cursor for both round trips: each cursor costs the driver and Django a setup.
    with transaction.atomic(), connection.cursor() as cursor:
        state, window = loyalty_state_lock(
            ladder=ladder, partner_id=partner.pk, msisdn=purchase.msisdn, now=now,
            then=velocity_statements(msisdn=purchase.msisdn, now=now), cursor=cursor,
        )
        plan = loyalty_purchase_plan(ladder=ladder, state=state, now=now)
        txn = transaction_new(partner=partner, purchase=purchase, wallet=wallet, after=plan.after, reward=plan.reward, now=now)
        # The document shows the tier's name: attach the tier we already know instead of a query.
        Transaction.tier.field.set_cached_value(txn, sql.new(TierLevel, id=plan.after.rung.id, name=plan.after.rung.name, rank=plan.after.rung.rank))
        journey, state_update = loyalty_plan_writes(plan=plan, transaction=txn)
        payout = payout_writes(transaction_obj=txn, amount=txn.total, now=now, window_total=velocity_total(window)) if txn.total > 0 else []
        sql.insert_chain([sql.Row(txn), *journey, *payout], updates=[state_update], now=now, cursor=cursor)
        if payout:
            payout_announce(payout, kezbek_ref=txn.kezbek_ref)
    return txn


def transaction_new(*, partner, purchase: Purchase, wallet, after: Standing, reward: Decimal, now) -> Transaction:
    """The unsaved transaction of an accepted purchase: its rule's cashback plus the loyalty reward."""
    rule = cashback_rule_matching(partner=partner, quantity=purchase.quantity, amount=purchase.amount, at=now)
    cashback = cashback_compute(amount=purchase.amount, percentage=rule.percentage, cap=rule.max_cashback) if rule else ZERO
    return sql.new(
        Transaction,
        kezbek_ref=kezbek_ref_new(),
        partner=partner,
        partner_ref=purchase.partner_ref,
        msisdn=purchase.msisdn,
        email=purchase.email,
        quantity=purchase.quantity,
        amount=purchase.amount,
        wallet=wallet,
        rule=rule,
        cashback=cashback,
        reward=reward,
        total=cashback + reward,
        tier_id=after.rung.id,
        tier_count=after.count,
        tier_expires_at=after.expires_at,
        created_at=now,
    )
