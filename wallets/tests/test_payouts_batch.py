"""Batched delivery of new payouts (wallets.services.payouts_deliver): one claim statement, the sends
in parallel, one statement for the credited ones, and everything else as payout_deliver does it.
In-process against the sandbox over HTTP, on PostgreSQL (the batch statements are PostgreSQL's)."""

from decimal import Decimal

import pytest

from cashback.services import Purchase, transaction_record
from wallets import services
from wallets.models import Payout, PayoutAttempt, PayoutEvent

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

S = Payout.Status
O = PayoutAttempt.Outcome


@pytest.fixture
def new_payouts(partner, ladder, routes, breakers_closed):
    """Records purchases whose payouts are exactly their amounts; returns (payout, hint) pairs, not queued."""
    from datetime import timedelta

    from django.utils import timezone

    from cashback.models import CashbackRule

    CashbackRule.objects.create(name="all of it", percentage=Decimal("100"), valid_from=timezone.now() - timedelta(days=1))
    lajada, _ = partner
    counter = iter(range(1, 10**6))

    def buy(*orders: tuple[str, str], email: str = "") -> list[tuple[Payout, dict]]:
        made = []
        for wallet, amount in orders:
            n = next(counter)
            txn, _ = transaction_record(
                partner=lajada,
                purchase=Purchase(partner_ref=f"B-{n}", msisdn=f"62813{n:08d}", quantity=1, amount=Decimal(amount), wallet=wallet, email=email),
            )
            made.append((txn.payout, services.payout_hint(txn.payout, kezbek_ref=txn.kezbek_ref)))
        return made

    return buy


@pytest.fixture
def published(monkeypatch):
    """What the batch queues after commit: (task name, calls)."""
    sent = []
    monkeypatch.setattr(services, "_publish_many", lambda name, calls, **_: sent.append((name, [call[:2] for call in calls])))
    return sent


def _credits(sandbox, payout: Payout) -> int:
    payout = Payout.objects.select_related("provider", "transaction").get(pk=payout.pk)
    if payout.provider.code == "GOPAIDH2H":
        return sum(1 for c in sandbox.ledger("GOPAIDH2H") if c["msisdn"] == payout.msisdn)
    return sum(1 for c in sandbox.ledger() if (c["client_ref"] or "").startswith(payout.transaction.kezbek_ref))


def test_a_batch_is_claimed_sent_and_finished_with_every_row_a_single_delivery_writes(
    sandbox, new_payouts, published, django_capture_on_commit_callbacks
):
    made = new_payouts(("LSAJA", "10000.00"), ("LSAJA", "1000000.00"), ("GPAID", "10000.00"), ("JOSVO", "200000.00"), email="a@b.id")
    with django_capture_on_commit_callbacks(execute=True):
        outcomes = services.payouts_deliver(items=[(p.pk, hint) for p, hint in made])

    assert outcomes == {S.SUCCEEDED: 4}
    expected = {0: ("MTRANS", "550.00", "1000.00"), 1: ("XENIT", "750.00", "5500.00"), 2: ("GOPAIDH2H", "300.00", "750.00"), 3: ("XENIT", "750.00", "1500.00")}
    for n, (payout, _) in enumerate(made):
        stored = Payout.objects.select_related("provider", "transaction").get(pk=payout.pk)
        code, fee, dearest = expected[n]
        assert (stored.status, stored.provider.code, stored.fee, stored.dearest_fee, stored.lease) == (S.SUCCEEDED, code, Decimal(fee), Decimal(dearest), 1)
        assert stored.reference == f"{stored.transaction.kezbek_ref}-{code}"
        assert stored.next_check_at is None
        [attempt] = PayoutAttempt.objects.filter(payout=payout)
        assert (attempt.kind, attempt.outcome, attempt.reference, attempt.http_status) == ("SEND", O.CREDITED, stored.reference, 200)
        assert attempt.latency_ms is not None and attempt.latency_ms >= 0
        assert attempt.provider_ref == stored.provider_ref
        if code != "GOPAIDH2H":
            assert stored.provider_ref, "the provider's own reference is kept"
        events = list(PayoutEvent.objects.filter(payout=payout).order_by("id").values_list("from_status", "to_status", "note"))
        assert events[0][:2] == ("", S.PENDING)
        assert events[1] == (S.PENDING, S.SENDING, f"send via {code} (fee {fee}, dearest {dearest})")
        assert events[2] == (S.SENDING, S.SUCCEEDED, f"credited by {code}")
        assert len(events) == 3
        assert _credits(sandbox, payout) == 1
    # The customer gave an email: each payout's notification task is queued, once, after commit.
    assert published == [("wallets.payout_notify", [((p.pk,), None) for p, _ in made])]


def test_nobody_to_tell_queues_no_notification(sandbox, new_payouts, published, django_capture_on_commit_callbacks):
    made = new_payouts(("LSAJA", "10000.00"), ("GPAID", "20000.00"))
    with django_capture_on_commit_callbacks(execute=True):
        assert services.payouts_deliver(items=[(p.pk, hint) for p, hint in made]) == {S.SUCCEEDED: 2}
    assert published == [("wallets.payout_notify", [])]


def test_a_message_twice_and_a_payout_already_delivered_are_never_paid_again(sandbox, new_payouts, published):
    (first, first_hint), (second, second_hint) = new_payouts(("LSAJA", "10000.00"), ("JOSVO", "10000.00"))
    assert services.payout_deliver(payout_id=first.pk, hint=first_hint) == S.SUCCEEDED

    outcomes = services.payouts_deliver(items=[(first.pk, first_hint), (second.pk, second_hint), (second.pk, second_hint)])

    # The delivered one fails the batch's claim (no longer PENDING, lease 1) and is read: nothing to do.
    assert outcomes == {S.SUCCEEDED: 1, "None": 1}
    assert _credits(sandbox, first) == 1 and _credits(sandbox, second) == 1
    assert PayoutAttempt.objects.filter(payout__in=[first, second]).count() == 2
    assert Payout.objects.get(pk=second.pk).status == S.SUCCEEDED


def test_a_hint_that_does_not_match_the_payout_claims_nothing_and_the_payout_is_read(sandbox, new_payouts, published):
    [(payout, hint)] = new_payouts(("LSAJA", "10000.00"))
    wrong = {**hint, "amount": "99999.00"}

    assert services.payouts_deliver(items=[(payout.pk, wrong)]) == {S.SUCCEEDED: 1}

    stored = Payout.objects.get(pk=payout.pk)
    assert (stored.status, stored.amount) == (S.SUCCEEDED, Decimal("10000.00"))
    credits = [c for c in sandbox.ledger("MTRANS") if c["client_ref"].startswith(hint["kezbek_ref"])]
    assert [Decimal(str(c["amount"])) for c in credits] == [Decimal("10000.00")], "paid the stored amount, never the hint's"


def test_refusals_pending_and_unknown_outcomes_in_a_batch_go_on_as_a_single_delivery_would(sandbox, new_payouts, published):
    # LSAJA 10,000: MTRANS (550) refuses, so the next cheapest, XENIT (750), takes it and answers
    # PENDING. GoPaid answers unknown: it has no status inquiry, so a person decides.
    sandbox.faults({"MTRANS": {"refuse_rate": 1}, "XENIT": {"pending_rate": 1, "callback_drop_rate": 1}, "GOPAIDH2H": {"unknown_rate": 1}})
    made = new_payouts(("LSAJA", "10000.00"), ("LSAJA", "20000.00"), ("GPAID", "10000.00"))

    outcomes = services.payouts_deliver(items=[(p.pk, hint) for p, hint in made])

    assert outcomes == {S.AWAITING_CALLBACK: 2, S.MANUAL_REVIEW: 1}
    for payout, _ in made[:2]:
        stored = Payout.objects.select_related("provider").get(pk=payout.pk)
        assert (stored.status, stored.provider.code, stored.lease) == (S.AWAITING_CALLBACK, "XENIT", 2)
        attempts = list(PayoutAttempt.objects.filter(payout=payout).order_by("id").values_list("provider__code", "outcome"))
        assert attempts == [("MTRANS", O.REFUSED), ("XENIT", O.PENDING)]
        assert list(PayoutEvent.objects.filter(payout=payout).order_by("id").values_list("to_status", flat=True)) == [
            S.PENDING, S.SENDING, S.PENDING, S.SENDING, S.AWAITING_CALLBACK,
        ]
    gopaid = Payout.objects.get(pk=made[2][0].pk)
    assert gopaid.status == S.MANUAL_REVIEW
    assert list(PayoutAttempt.objects.filter(payout=gopaid).values_list("outcome", flat=True)) == [O.UNKNOWN]
    assert sandbox.ledger("MTRANS") == [], "a refusal moved no money"


def test_a_batch_larger_than_the_send_threads_is_claimed_and_sent_round_by_round(sandbox, new_payouts, published, settings, monkeypatch):
    # gathered messages carry up to 16 payouts each: a batch of them can hold far more payouts than
    # there are send threads, and none may sit SENDING while it waits for one (the sweeper's stale check)
    settings.CEZBEK_PAYOUT_BATCH_SIZE = 2
    made = new_payouts(*[("LSAJA", f"{n}0000.00") for n in range(1, 6)])
    claims = []
    claim_many = services._claim_many

    def claim_counted(plans, scope):
        claims.append(len(plans))
        # when a round is claimed, the earlier rounds are done: nothing else is SENDING
        assert not Payout.objects.filter(status=S.SENDING).exists()
        return claim_many(plans, scope)

    monkeypatch.setattr(services, "_claim_many", claim_counted)

    outcomes = services.payouts_deliver(items=[(p.pk, hint) for p, hint in made] + [(made[0][0].pk, made[0][1])])

    assert claims == [2, 2, 1]
    assert outcomes == {S.SUCCEEDED: 5}
    assert all(_credits(sandbox, p) == 1 for p, _ in made)
