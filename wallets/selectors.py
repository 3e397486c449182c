from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from cezbek.snapshots import cached
from wallets.models import Fee, Payout, PayoutAttempt, Wallet


def _wallets() -> dict[str, Wallet]:
    return {wallet.code: wallet for wallet in Wallet.objects.all()}


def wallet_code(*, wallet_id: int) -> str:
    return next(w.code for w in cached("wallets", _wallets).values() if w.id == wallet_id)


def wallet_active(*, code: str) -> Wallet | None:
    """The active wallet with this code, case-insensitive."""
    wallet = wallet_known(code=code)
    return wallet if wallet is not None and wallet.active else None


def wallet_known(*, code: str) -> Wallet | None:
    """The wallet with this code, case-insensitive, active or not."""
    return cached("wallets", _wallets).get(code.upper())


CENT = Decimal("0.01")


@dataclass(frozen=True)
class Route:
    provider_id: int
    provider_code: str
    fee: Decimal
    dearest_fee: Decimal


def fee_for(*, flat_fee: Decimal, percent_fee: Decimal, amount: Decimal) -> Decimal:
    """flat + percent of the amount, rounded half-up to the cent (DOMAIN.md §4)."""
    return (flat_fee + amount * percent_fee / Decimal(100)).quantize(CENT, rounding=ROUND_HALF_UP)


def route_candidates(*, wallet_id: int, amount: Decimal, exclude: set[str] = frozenset()) -> list[tuple[Decimal, int, str, int]]:
    """(fee, priority, code, provider id) for every active route to the wallet, cheapest first."""
    return sorted(
        (fee_for(flat_fee=flat, percent_fee=pct, amount=amount), priority, code, provider_id)
        for flat, pct, priority, code, provider_id in cached("routes", _routes).get(wallet_id, ())
        if code not in exclude
    )


def _routes() -> dict[int, list[tuple]]:
    """Active fee rows of active providers, by wallet."""
    routes: dict[int, list[tuple]] = {}
    rows = Fee.objects.filter(active=True, archived=False, provider__active=True).values_list(
        "wallet_id", "flat_fee", "percent_fee", "provider__priority", "provider__code", "provider_id"
    )
    for wallet_id, *route in rows:
        routes.setdefault(wallet_id, []).append(tuple(route))
    return routes


def cheapest_route(*, wallet_id: int, amount: Decimal, exclude: set[str] = frozenset()) -> Route | None:
    """The cheapest healthy route (DOMAIN.md §4): ties by provider priority, then code.

    Candidates are the active fee rows of active providers whose breaker is not open, less
    `exclude` (routes that already refused this payout). The dearest candidate's fee is
    returned too, for the saving report.
    """
    from wallets.breakers import breakers_open

    candidates = route_candidates(wallet_id=wallet_id, amount=amount, exclude=exclude)
    cooling = breakers_open([code for _, _, code, _ in candidates])
    candidates = [c for c in candidates if c[2] not in cooling]
    if not candidates:
        return None
    fee, _, code, provider_id = candidates[0]
    return Route(provider_id=provider_id, provider_code=code, fee=fee, dearest_fee=candidates[-1][0])


def payout_refused_by(*, payout: Payout) -> set[str]:
    """Providers that definitely refused this payout (since an operator's last retry): it never goes back to them."""
    attempts = PayoutAttempt.objects.filter(payout_id=payout.pk, outcome=PayoutAttempt.Outcome.REFUSED)
    if payout.retried_at:
        attempts = attempts.filter(created_at__gt=payout.retried_at)
    return set(attempts.values_list("provider__code", flat=True))


def payouts_due(*, statuses, now, limit: int = 500) -> list[int]:
    return list(
        Payout.objects.filter(status__in=statuses, next_check_at__lte=now).order_by("next_check_at").values_list("id", flat=True)[:limit]
    )
