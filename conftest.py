"""Fixtures shared by every app's tests: the reference configuration and a signing client."""

import json
import os
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import connection

from partners.signing import signed_headers

pytest_plugins = ["cezbek.testing.aws"]  # moto_server fixtures: aws_server, aws


def _django_configured() -> bool:
    # The sandbox's own tests run with `-p no:django`: nothing here may need Django then.
    return bool(os.environ.get("DJANGO_SETTINGS_MODULE")) or settings.configured


def pytest_collection_modifyitems(config, items):
    if not _django_configured():
        return
    on_postgres = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
    skip_pg = pytest.mark.skip(reason="needs PostgreSQL (DATABASE_URL unset: running on SQLite)")
    skip_redis = pytest.mark.skip(reason="needs Redis (REDIS_URL unset)")
    for item in items:
        if "postgres" in item.keywords and not on_postgres:
            item.add_marker(skip_pg)
        if "redis" in item.keywords and not settings.REDIS_URL:
            item.add_marker(skip_redis)


@pytest.fixture(autouse=True)
def _clear_cache():
    if not _django_configured():
        yield
        return
    from django.core.cache import cache

    from cezbek import snapshots

    snapshots.reset()  # a rolled-back test database fires no signal
    if hasattr(cache, "delete_pattern"):  # Redis: only this run's keys (CEZBEK_CACHE_PREFIX)
        cache.delete_pattern("*")
    else:
        cache.clear()
    yield
    # New payouts a test's purchases handed to the web process's gatherer are queued now, in this
    # test, not later in another test's broker queues (cezbek/gathering.py).
    from wallets.services import NEW_PAYOUTS

    NEW_PAYOUTS.flush()


@pytest.fixture
def wallets(db):
    from wallets.models import Wallet

    return {
        code: Wallet.objects.create(code=code, name=name)
        for code, name in [("LSAJA", "LinkSaja"), ("GPAID", "GoPaid"), ("JOSVO", "Josvo")]
    }


@pytest.fixture
def ladder(db):
    """The demo ladder of DOMAIN.md §2, as tests' own fixture."""
    from loyalty.models import RewardRule, TierLevel

    bronze = TierLevel.objects.create(name="BRONZE", rank=1, promote_after=5, validity_days=None)
    silver = TierLevel.objects.create(name="SILVER", rank=2, promote_after=10, validity_days=90)
    gold = TierLevel.objects.create(name="GOLD", rank=3, promote_after=None, validity_days=180)
    for tier, nth, reward in [(bronze, 5, "5000"), (silver, 5, "10000"), (silver, 10, "25000"), (gold, 5, "25000"), (gold, 10, "50000")]:
        RewardRule.objects.create(tier=tier, nth=nth, reward=Decimal(reward))
    return {"BRONZE": bronze, "SILVER": silver, "GOLD": gold}


@pytest.fixture
def make_partner(db):
    from partners.models import Partner
    from partners.services import credential_issue

    def make(code="LAJADA", **fields):
        partner = Partner.objects.create(code=code, name=fields.pop("name", code.title()), **fields)
        return partner, credential_issue(partner=partner)

    return make


@pytest.fixture
def partner(make_partner):
    return make_partner("LAJADA")


class SignedClient:
    """Signs every request like a partner's client would (API.md)."""

    def __init__(self, client, key_id: str, secret: str):
        self.client, self.key_id, self.secret = client, key_id, secret

    def headers(self, method: str, path: str, body: bytes, timestamp: int | None = None) -> dict:
        ts = int(time.time()) if timestamp is None else timestamp
        return signed_headers(key_id=self.key_id, secret=self.secret, method=method, path=path, body=body, timestamp=ts)

    def post(self, path: str, payload=None, *, raw: bytes | None = None, timestamp=None, headers=None):
        body = raw if raw is not None else json.dumps(payload).encode()
        h = self.headers("POST", path, body, timestamp)
        h.update(headers or {})
        return self.client.generic("POST", path, body, content_type="application/json", headers=h)

    def get(self, path: str, *, timestamp=None):
        return self.client.generic("GET", path, b"", headers=self.headers("GET", path, b"", timestamp))


@pytest.fixture
def api(client, partner):
    _, credential = partner
    return SignedClient(client, credential.key_id, credential.secret)


@pytest.fixture
def global_rule(db):
    from cashback.models import CashbackRule
    from django.utils import timezone

    return CashbackRule.objects.create(
        name="Everything 1%", min_quantity=1, min_amount=Decimal("0"), percentage=Decimal("1.00"),
        valid_from=timezone.now() - timedelta(days=1),
    )


@pytest.fixture
def on_postgres():
    return connection.vendor == "postgresql"


def _staff_in(django_user_model, username: str, group: str):
    """A logged-in client of a staff user in one of the roles' groups (cezbek/roles.py)."""
    from django.contrib.auth.models import Group
    from django.test import Client

    user = django_user_model.objects.create_user(username, password="not-used", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def ops(db, django_user_model):
    from cezbek.roles import OPERATIONS

    return _staff_in(django_user_model, "rina.ops", OPERATIONS)


@pytest.fixture
def finance(db, django_user_model):
    from cezbek.roles import FINANCE

    return _staff_in(django_user_model, "budi.finance", FINANCE)
