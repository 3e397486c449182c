from wallets.models import Wallet


def wallet_active(*, code: str) -> Wallet | None:
    """The active wallet with this code, case-insensitive."""
    return Wallet.objects.filter(code=code.upper(), active=True).first()
