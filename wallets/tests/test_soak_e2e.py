"""Soak (DOMAIN.md §5 invariant): 1,000 purchases through faults and two SIGKILLs of the whole worker.

Afterwards every payout is terminal and the sandbox's own books — the independent witness —
show no payout credited twice (by one provider or two), every SUCCEEDED payout credited exactly
once with its amount, and no FAILED or CANCELLED payout credited at all.
"""

import time
from collections import Counter, defaultdict
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from wallets.models import Payout, PayoutAttempt
from wallets.tests.conftest import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PURCHASES = 1000
FAULTS = {"refuse_rate": 0.2, "unknown_rate": 0.1, "timeout_rate": 0.05, "timeout_ms": 1500}


def test_soak_with_faults_and_two_worker_kills(sandbox, worker, routes, breakers_closed, api, ladder):
    from cashback.models import CashbackRule

    CashbackRule.objects.create(name="all of it", percentage=Decimal("100"), valid_from=timezone.now() - timedelta(days=1))
    faults = {code: dict(FAULTS) for code in routes}
    faults["XENIT"]["pending_rate"] = 0.3
    faults["XENIT"]["callback_delay_ms"] = 500
    sandbox.faults(faults)

    wallets = ["LSAJA", "GPAID", "JOSVO"]
    started = time.monotonic()
    for n in range(PURCHASES):
        # a unique MSISDN and amount per purchase, so every credit in the books maps to one payout
        amount = Decimal(5000 + n * 97) if n % 10 else Decimal(100000 + n)
        body = {"partner_ref": f"SOAK-{n}", "msisdn": f"62813{n:08d}", "quantity": 1, "amount": str(amount), "wallet": wallets[n % 3]}
        assert api.post("/api/v1/cashbacks", body).status_code == 201
        if n in (300, 700):
            # the whole worker, mid-run, with payouts in flight
            wait_for(lambda: Payout.objects.filter(status__in=["SENDING", "UNKNOWN", "AWAITING_CALLBACK"]).exists(), 20, "payouts in flight")
            worker.kill()
            time.sleep(1)
            worker.start()

    def all_terminal():
        return not Payout.objects.exclude(status__in=Payout.TERMINAL).exists()

    wait_for(all_terminal, 420, "every payout to reach a terminal state", interval=1)
    elapsed = time.monotonic() - started

    payouts = {p.msisdn: p for p in Payout.objects.select_related("provider")}
    assert len(payouts) == PURCHASES
    credits = defaultdict(list)
    for credit in sandbox.ledger():
        assert credit["msisdn"] in payouts, f"a credit for no payout of ours: {credit}"
        credits[credit["msisdn"]].append(credit)

    states = Counter(p.status for p in payouts.values())
    credited_in_review = sum(1 for p in payouts.values() if p.status == "MANUAL_REVIEW" and credits[p.msisdn])
    attempts = Counter(PayoutAttempt.objects.values_list("kind", "outcome"))
    print(f"\nsoak: {PURCHASES} purchases in {elapsed:.0f}s; payouts by state: {dict(sorted(states.items()))}")
    print(f"soak: MANUAL_REVIEW payouts the books show credited: {credited_in_review}")
    print(f"soak: attempts by kind and outcome: {dict(sorted(attempts.items()))}")

    for msisdn, payout in payouts.items():
        found = credits[msisdn]
        assert len(found) <= 1, f"payout {payout.pk} credited {len(found)} times: {found}"
        if payout.status == "SUCCEEDED":
            assert len(found) == 1, f"SUCCEEDED payout {payout.pk} not in the books"
            assert Decimal(found[0]["amount"]) == payout.amount
            assert found[0]["provider"] == payout.provider.code
        elif payout.status in ("FAILED", "CANCELLED"):
            assert found == [], f"{payout.status} payout {payout.pk} was credited: {found}"
    assert states["SUCCEEDED"] > PURCHASES * 0.8
    # the faults really happened, and the kills really left work for the sweeper
    assert attempts[("SEND", "REFUSED")] > 0 and attempts[("SEND", "UNKNOWN")] > 0 and attempts[("SEND", "PENDING")] > 0
    assert attempts[("INQUIRY", "CREDITED")] + attempts[("INQUIRY", "NOT_FOUND")] > 0
