"""Concurrency on PostgreSQL with real threads (DOMAIN.md §3): duplicates and one customer's purchases."""

import json
import threading
import time
from collections import Counter
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client

from cashback import services
from cashback.models import Transaction
from loyalty.models import JourneyEntry, LoyaltyState
from partners.signing import signed_headers
from wallets.models import Payout

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
PATH = "/api/v1/cashbacks"


def run_concurrently(n, fn):
    """Runs fn(i) in n threads released together; returns the results in order."""
    barrier = threading.Barrier(n)
    results = [None] * n
    errors = []

    def worker(i):
        try:
            barrier.wait()
            results[i] = fn(i)
        except Exception as exc:  # surfaced below: a thread must not die silently
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


def signed_post(key_id, secret, body: dict, timestamp: int):
    raw = json.dumps(body).encode()
    headers = signed_headers(key_id=key_id, secret=secret, method="POST", path=PATH, body=raw, timestamp=timestamp)
    response = Client().generic("POST", PATH, raw, content_type="application/json", headers=headers)
    return response.status_code, response.json()


def test_thirty_identical_posts_make_one_transaction_and_one_payout(partner, wallets, ladder, global_rule):
    _, cred = partner
    body = {"partner_ref": "DUP-1", "msisdn": "628118770510", "quantity": 1, "amount": "50000.00", "wallet": "LSAJA"}
    now = int(time.time())
    # each retry is signed afresh (its own timestamp), as a partner's retry would be
    results = run_concurrently(30, lambda i: signed_post(cred.key_id, cred.secret, body, now - i))
    statuses = Counter(status for status, _ in results)
    assert statuses == {201: 1, 200: 29}
    bodies = {json.dumps(b, sort_keys=True) for _, b in results}
    assert len(bodies) == 1
    assert Transaction.objects.count() == 1
    assert Payout.objects.count() == 1
    assert LoyaltyState.objects.get().count == 1
    assert JourneyEntry.objects.count() == 1


def test_twenty_concurrent_purchases_of_one_customer_are_as_if_sequential(partner, wallets, ladder, global_rule):
    _, cred = partner
    now = int(time.time())

    def buy(i):
        body = {"partner_ref": f"C-{i}", "msisdn": "628118770510", "quantity": 1, "amount": "1000.00", "wallet": "GPAID"}
        return signed_post(cred.key_id, cred.secret, body, now)

    results = run_concurrently(20, buy)
    assert all(status == 201 for status, _ in results)
    # sequentially: 5 BRONZE (5th: 5,000, promote), 10 SILVER (5th 10,000, 10th 25,000, promote), 5 GOLD (5th 25,000)
    state = LoyaltyState.objects.get()
    assert (state.tier.name, state.count) == ("GOLD", 5)
    rewards = sorted(Transaction.objects.values_list("reward", flat=True))
    assert rewards == [Decimal("0.00")] * 16 + [Decimal("5000.00"), Decimal("10000.00"), Decimal("25000.00"), Decimal("25000.00")]
    journey = list(JourneyEntry.objects.order_by("id").values_list("reason", "tier_before__name", "tier_after__name", "count"))
    assert [r for r, *_ in journey] == ["PURCHASE"] * 4 + ["PROMOTED"] + ["PURCHASE"] * 9 + ["PROMOTED"] + ["PURCHASE"] * 5
    # the counts the customer saw, in commit order, are exactly 1..4, 0, 1..9, 0, 1..5
    assert [c for *_, c in journey] == [1, 2, 3, 4, 0, *range(1, 10), 0, 1, 2, 3, 4, 5]
    assert Payout.objects.count() == 20  # every purchase earned 1% cashback
    assert sum(Payout.objects.values_list("amount", flat=True)) == Decimal("65200.00")


def test_concurrent_first_purchases_of_new_customers_share_one_state(partner, wallets, ladder, global_rule):
    _, cred = partner
    now = int(time.time())

    def buy(i):
        body = {"partner_ref": f"N-{i}", "msisdn": "628123456789", "quantity": 1, "amount": "100.00", "wallet": "JOSVO"}
        return signed_post(cred.key_id, cred.secret, body, now)

    assert [s for s, _ in run_concurrently(8, buy)] == [201] * 8
    assert LoyaltyState.objects.count() == 1
    assert LoyaltyState.objects.get().count == 3  # 5th promoted to SILVER (count 0), then 3 more


def test_same_ref_different_content_concurrently_one_wins_rest_conflict(partner, wallets, ladder, global_rule):
    _, cred = partner
    now = int(time.time())

    def buy(i):
        body = {"partner_ref": "RACE", "msisdn": f"62811000000{i}", "quantity": 1, "amount": "100.00", "wallet": "LSAJA"}
        return signed_post(cred.key_id, cred.secret, body, now)

    statuses = Counter(s for s, _ in run_concurrently(6, buy))
    assert statuses == {201: 1, 409: 5}
    assert Transaction.objects.count() == 1 and Payout.objects.count() == 1
    assert LoyaltyState.objects.filter(count__gt=0).count() == 1


def test_kezbek_refs_are_unique_and_a_collision_is_redrawn(partner, wallets, ladder, monkeypatch):
    draw = services.kezbek_ref_new
    assert len({draw() for _ in range(100_000)}) == 100_000
    refs = iter(["KZSAME", "KZSAME", "KZOTHER"])
    monkeypatch.setattr(services, "kezbek_ref_new", lambda: next(refs))
    p = partner[0]
    a, _ = services.transaction_record(partner=p, purchase=services.Purchase("a", "628118770510", 1, Decimal("10.00"), "LSAJA"))
    b, created = services.transaction_record(partner=p, purchase=services.Purchase("b", "628118770510", 1, Decimal("10.00"), "LSAJA"))
    assert created and (a.kezbek_ref, b.kezbek_ref) == ("KZSAME", "KZOTHER")
    assert Transaction.objects.count() == 2
