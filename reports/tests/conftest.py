"""Reconciliation and invoice fixtures: real payouts made by the services and delivered to the sandbox.

The sandbox harness (a sandbox process, its books, the fee table, the real worker) is the one the
wallets tests use; it is imported here so that these tests run against the same thing.
"""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
import requests

from wallets.tests.conftest import (  # noqa: F401 (fixtures)
    breakers_closed,
    routes,
    sandbox,
    sandbox_process,
    worker,
)


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """Files go through default_storage into a directory of the test's own."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def stored_files(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture
def all_of_it(db):
    """A cashback rule paying 100 % of the purchase: a payout is exactly the purchase amount."""
    from datetime import timedelta

    from django.utils import timezone

    from cashback.models import CashbackRule

    return CashbackRule.objects.create(name="all of it", percentage=Decimal("100"), valid_from=timezone.now() - timedelta(days=1))


@pytest.fixture
def buy(partner, ladder, all_of_it, wallets):
    """Records a purchase through the cashback service (as the API does); returns its PENDING payout.

    Nothing is queued: the test's transaction never commits, so delivery is the test's call (`deliver`).
    """
    from cashback.services import Purchase, transaction_record

    lajada, _ = partner
    counter = iter(range(1, 10**6))

    def purchase(wallet: str, amount: str, msisdn: str | None = None):
        n = next(counter)
        txn, created = transaction_record(
            partner=lajada,
            purchase=Purchase(partner_ref=f"REC-{n}", msisdn=msisdn or f"62813{n:08d}", quantity=1, amount=Decimal(amount), wallet=wallet),
        )
        assert created
        return txn.payout

    return purchase


@pytest.fixture
def deliver(sandbox, routes, breakers_closed):
    """Delivers a payout in this process, over HTTP to the sandbox, as a worker would; returns it reloaded."""
    from wallets.models import Payout
    from wallets.services import payout_deliver

    def run(payout):
        payout_deliver(payout_id=payout.pk)
        return Payout.objects.select_related("provider", "transaction").get(pk=payout.pk)

    return run


def utc_today() -> str:
    return datetime.now(UTC).date().isoformat()


def settlement_file(sandbox, code: str, day: str | None = None) -> tuple[str, bytes]:
    """The provider's settlement file for a UTC day, as the sandbox serves it: (file name, bytes)."""
    day = day or utc_today()
    response = requests.get(f"{sandbox.url}/{code.lower()}/settlements", params={"date": day}, timeout=10)
    assert response.status_code == 200, response.text
    disposition = response.headers["Content-Disposition"]
    return disposition.split('filename="')[1].rstrip('"'), response.content


def book_credit(sandbox, **credit) -> dict:
    """A credit the provider made that Cezbek never asked for (or asked another provider for)."""
    response = requests.post(f"{sandbox.url}/_sandbox/ledger", json=credit, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()
