"""The payouts admin as operations use it: filters answer, and retry / cancel / resolve go through the
services, change the status only where the rules allow, and record who did it in the payout's history."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from cashback.services import Purchase, transaction_record
from wallets.admin import PayoutAdmin
from wallets.models import Payout, PayoutAttempt, PayoutEvent, Provider

S = Payout.Status
CHANGELIST = reverse("admin:wallets_payout_changelist")
# Session, user, the provider and wallet filters' choices, the count, the rows (with their transaction,
# wallet and provider), the date hierarchy's two: 8, whether the page lists 1 payout or 201
# (without list_select_related, 5 rows already take 23).
MAX_CHANGELIST_QUERIES = 10


def resolve_url(payout: Payout) -> str:
    return reverse("admin:wallets_payout_resolve", args=[payout.pk])


def change_url(payout: Payout) -> str:
    return reverse("admin:wallets_payout_change", args=[payout.pk])


@pytest.fixture(autouse=True)
def enqueued(monkeypatch):
    """No broker in these tests: delivery queued on commit is recorded instead of sent."""
    queued = []
    monkeypatch.setattr("wallets.services.payout_enqueue", lambda *, payout_id, **kw: queued.append(payout_id))
    return queued


@pytest.fixture
def mtrans(db):
    return Provider.objects.create(code="MTRANS", name="Middletrans", kind=Provider.Kind.AGGREGATOR)


@pytest.fixture
def make_payout(wallets, ladder, partner, global_rule):
    """A payout as a posted purchase creates it (PENDING), then put in `status` by the test's arrangement."""
    lajada, _ = partner
    counter = iter(range(1, 100_000))

    def make(status: str = S.PENDING, *, amount: str = "750000.00", **fields) -> Payout:
        n = next(counter)
        txn, created = transaction_record(
            partner=lajada,
            purchase=Purchase(
                partner_ref=f"INV/{n}", msisdn=f"62811877{n:04d}", quantity=1, amount=Decimal(amount), wallet="LSAJA"
            ),
        )
        assert created
        Payout.objects.filter(pk=txn.payout.pk).update(status=status, **fields)
        return Payout.objects.get(pk=txn.payout.pk)

    return make


@pytest.fixture
def viewer(client, django_user_model):
    """Staff who may look at payouts, their attempts and history, but not act on them."""
    user = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_payout", "view_payoutattempt", "view_payoutevent"])
    )
    client.force_login(user)
    return client


def act(client, action: str, payouts, **extra):
    return client.post(CHANGELIST, {"action": action, ACTION_CHECKBOX_NAME: [p.pk for p in payouts], **extra})


def message_texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def events(payout: Payout) -> list[tuple]:
    return list(PayoutEvent.objects.filter(payout=payout).values_list("from_status", "to_status", "actor__username", "note"))


# --- the list -----------------------------------------------------------------------------------


def test_changelist_answers_with_each_filter(admin_client, make_payout, mtrans, wallets):
    fresh = make_payout(S.FAILED, provider=mtrans)
    old = make_payout(S.SUCCEEDED, created_at=timezone.now() - timedelta(days=2))
    for query, expected in [
        ({}, {fresh.pk, old.pk}),
        ({"status__exact": "FAILED"}, {fresh.pk}),
        ({"provider__id__exact": str(mtrans.pk)}, {fresh.pk}),
        ({"wallet__id__exact": str(wallets["LSAJA"].pk)}, {fresh.pk, old.pk}),
        ({"age": "lt5m"}, {fresh.pk}),
        ({"age": "5m-1h"}, set()),
        ({"age": "1h-24h"}, set()),
        ({"age": "gt24h"}, {old.pk}),
        ({"q": "08118770001"}, {fresh.pk}),
    ]:
        response = admin_client.get(CHANGELIST, query)
        assert response.status_code == 200, query
        assert {p.pk for p in response.context["cl"].result_list} == expected, query
    # sorted by age (column 12, after the action checkbox): youngest first, then oldest first
    for order, expected_order in [("12", [fresh.pk, old.pk]), ("-12", [old.pk, fresh.pk])]:
        response = admin_client.get(CHANGELIST, {"o": order})
        assert [p.pk for p in response.context["cl"].result_list] == expected_order, order
    page = admin_client.get(CHANGELIST).content.decode()
    assert "Retry selected FAILED payouts" in page and "Cancel selected payouts" in page


def test_changelist_queries_do_not_grow_with_the_rows(
    admin_client, make_payout, mtrans, django_assert_max_num_queries, monkeypatch
):
    monkeypatch.setattr(PayoutAdmin, "list_per_page", 500)  # every row on one page: N+1 would show
    make_payout(S.FAILED, provider=mtrans, fee=Decimal("4250.00"), dearest_fee=Decimal("5000.00"), flags=["velocity"])
    with django_assert_max_num_queries(MAX_CHANGELIST_QUERIES):
        assert admin_client.get(CHANGELIST).status_code == 200
    for status in [S.PENDING, S.SUCCEEDED, S.MANUAL_REVIEW, S.FAILED] * 50:
        make_payout(status, provider=mtrans, flags=["velocity"])
    assert Payout.objects.count() == 201
    with django_assert_max_num_queries(MAX_CHANGELIST_QUERIES):
        response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 201


def test_change_page_shows_attempts_and_the_audit(admin_client, make_payout, mtrans, admin_user):
    payout = make_payout(S.FAILED, provider=mtrans)
    PayoutAttempt.objects.create(
        payout=payout, provider=mtrans, kind="SEND", reference="REF-MTRANS", outcome="REFUSED", http_status=422, message="account closed"
    )
    act(admin_client, "retry_payouts", [payout])
    page = admin_client.get(change_url(payout)).content.decode()
    assert "REF-MTRANS" in page and "account closed" in page
    assert admin_user.username in page  # the retry's event names its actor
    assert 'name="amount"' not in page and 'name="status"' not in page
    assert "Resolve manual review" not in page  # only for MANUAL_REVIEW


# --- retry --------------------------------------------------------------------------------------


def test_retry_moves_a_failed_payout_back_to_pending_naming_the_operator(
    admin_client, admin_user, make_payout, enqueued, django_capture_on_commit_callbacks
):
    payout = make_payout(S.FAILED)
    with django_capture_on_commit_callbacks(execute=True):
        response = act(admin_client, "retry_payouts", [payout])
    assert response.status_code == 302
    payout.refresh_from_db()
    assert payout.status == S.PENDING and payout.retried_at is not None
    assert events(payout)[-1] == ("FAILED", "PENDING", admin_user.username, "retried by an operator")
    assert PayoutEvent.objects.filter(payout=payout).last().created_at is not None
    assert enqueued == [payout.pk]
    assert message_texts(response) == [f"Retried 1 payout(s): {payout.pk}; queued for delivery."]


def test_retry_of_a_succeeded_payout_changes_nothing_and_says_why(admin_client, make_payout, enqueued):
    payout = make_payout(S.SUCCEEDED)
    before = events(payout)
    response = act(admin_client, "retry_payouts", [payout])
    payout.refresh_from_db()
    assert payout.status == S.SUCCEEDED
    assert events(payout) == before
    assert enqueued == []
    assert message_texts(response) == [
        f"Payout {payout.pk} not retried: Only a FAILED payout can be retried; this one is SUCCEEDED."
    ]


def test_retry_of_several_acts_on_each_by_its_own_rules(admin_client, make_payout):
    failed, succeeded = make_payout(S.FAILED), make_payout(S.SUCCEEDED)
    response = act(admin_client, "retry_payouts", [failed, succeeded])
    assert dict(Payout.objects.filter(pk__in=[failed.pk, succeeded.pk]).values_list("pk", "status")) == {
        failed.pk: S.PENDING,
        succeeded.pk: S.SUCCEEDED,
    }
    texts = message_texts(response)
    assert len(texts) == 2 and f"Payout {succeeded.pk} not retried" in texts[0]


# --- cancel -------------------------------------------------------------------------------------


def test_cancel_asks_for_confirmation_first(admin_client, make_payout):
    payout = make_payout(S.PENDING)
    response = act(admin_client, "cancel_payouts", [payout])
    assert response.status_code == 200
    assert response.templates[0].name == "admin/wallets/payout/cancel_confirmation.html"
    assert payout.transaction.kezbek_ref in response.content.decode()
    payout.refresh_from_db()
    assert payout.status == S.PENDING


def test_cancel_of_a_pending_payout_with_a_note_names_the_operator(admin_client, admin_user, make_payout):
    payout = make_payout(S.PENDING)
    response = act(admin_client, "cancel_payouts", [payout], post="yes", note="customer closed the account")
    assert response.status_code == 302
    payout.refresh_from_db()
    assert payout.status == S.CANCELLED
    assert events(payout)[-1] == ("PENDING", "CANCELLED", admin_user.username, "customer closed the account")
    assert message_texts(response) == [f"Cancelled 1 payout(s): {payout.pk}."]


def test_cancel_without_a_note_is_allowed(admin_client, admin_user, make_payout):
    payout = make_payout(S.HELD)
    act(admin_client, "cancel_payouts", [payout], post="yes", note="")
    payout.refresh_from_db()
    assert payout.status == S.CANCELLED
    assert events(payout)[-1] == ("HELD", "CANCELLED", admin_user.username, "cancelled by an operator")


@pytest.mark.parametrize("outcome", [PayoutAttempt.Outcome.CREDITED, PayoutAttempt.Outcome.UNKNOWN, PayoutAttempt.Outcome.IN_FLIGHT])
def test_cancel_of_a_payout_that_may_have_been_sent_is_refused(admin_client, make_payout, mtrans, outcome):
    payout = make_payout(S.PENDING, provider=mtrans)
    PayoutAttempt.objects.create(payout=payout, provider=mtrans, kind="SEND", reference="R-1", outcome=outcome)
    before = events(payout)
    response = act(admin_client, "cancel_payouts", [payout], post="yes", note="stop it")
    payout.refresh_from_db()
    assert payout.status == S.PENDING
    assert events(payout) == before
    assert message_texts(response) == [
        f"Payout {payout.pk} not cancelled: This payout has been sent before; it cannot be cancelled."
    ]


def test_cancel_of_a_sending_payout_is_refused(admin_client, make_payout):
    payout = make_payout(S.SENDING)
    act(admin_client, "cancel_payouts", [payout], post="yes")
    payout.refresh_from_db()
    assert payout.status == S.SENDING


# --- resolve from MANUAL_REVIEW -------------------------------------------------------------------


def test_change_page_links_to_resolve_for_manual_review_only(admin_client, make_payout):
    payout = make_payout(S.MANUAL_REVIEW)
    page = admin_client.get(change_url(payout)).content.decode()
    assert resolve_url(payout) in page
    form = admin_client.get(resolve_url(payout))
    assert form.status_code == 200 and 'name="note"' in form.content.decode()


def test_resolve_with_an_empty_note_rerenders_the_form_and_changes_nothing(admin_client, make_payout):
    payout = make_payout(S.MANUAL_REVIEW)
    before = events(payout)
    response = admin_client.post(resolve_url(payout), {"outcome": "credited", "note": "   "})
    assert response.status_code == 200
    assert response.context["form"].errors == {"note": ["Say what you found: a note is required."]}
    assert "Say what you found: a note is required." in response.content.decode()
    payout.refresh_from_db()
    assert payout.status == S.MANUAL_REVIEW
    assert events(payout) == before


def test_resolve_as_credited_succeeds_with_the_note_and_the_operator(admin_client, admin_user, make_payout):
    payout = make_payout(S.MANUAL_REVIEW)
    response = admin_client.post(resolve_url(payout), {"outcome": "credited", "note": "paid per provider statement"})
    assert response.status_code == 302 and response.url == change_url(payout)
    payout.refresh_from_db()
    assert payout.status == S.SUCCEEDED
    assert events(payout)[-1] == ("MANUAL_REVIEW", "SUCCEEDED", admin_user.username, "paid per provider statement")
    assert message_texts(response) == [f"Payout {payout.pk} resolved: SUCCEEDED."]


def test_resolve_as_not_credited_fails_the_payout(admin_client, admin_user, make_payout):
    payout = make_payout(S.MANUAL_REVIEW)
    admin_client.post(resolve_url(payout), {"outcome": "not_credited", "note": "not in the provider statement"})
    payout.refresh_from_db()
    assert payout.status == S.FAILED
    assert events(payout)[-1] == ("MANUAL_REVIEW", "FAILED", admin_user.username, "not in the provider statement")


def test_resolve_needs_a_choice(admin_client, make_payout):
    payout = make_payout(S.MANUAL_REVIEW)
    response = admin_client.post(resolve_url(payout), {"note": "paid per provider statement"})
    assert response.status_code == 200 and "outcome" in response.context["form"].errors
    payout.refresh_from_db()
    assert payout.status == S.MANUAL_REVIEW


@pytest.mark.parametrize("status", [S.FAILED, S.UNKNOWN, S.SUCCEEDED])
def test_resolve_of_a_payout_not_in_manual_review_is_refused(admin_client, make_payout, status):
    payout = make_payout(status)
    before = events(payout)
    assert admin_client.get(resolve_url(payout)).status_code == 302
    response = admin_client.post(resolve_url(payout), {"outcome": "credited", "note": "paid per provider statement"})
    assert response.status_code == 302 and response.url == change_url(payout)
    payout.refresh_from_db()
    assert payout.status == status
    assert events(payout) == before
    assert f"Only a payout in MANUAL_REVIEW can be resolved; payout {payout.pk} is {status}." in message_texts(response)
    assert resolve_url(payout) not in admin_client.get(change_url(payout)).content.decode()


# --- who may act ----------------------------------------------------------------------------------


def test_view_only_staff_see_payouts_but_cannot_act(viewer, make_payout, mtrans):
    review, failed, pending = make_payout(S.MANUAL_REVIEW), make_payout(S.FAILED), make_payout(S.PENDING)
    PayoutAttempt.objects.create(payout=failed, provider=mtrans, kind="SEND", reference="R-V", outcome="REFUSED")
    # they can look: the list, a payout with its attempts and history
    listing = viewer.get(CHANGELIST)
    assert listing.status_code == 200
    assert "retry_payouts" not in listing.content.decode() and "cancel_payouts" not in listing.content.decode()
    page = viewer.get(change_url(failed))
    assert page.status_code == 200 and "R-V" in page.content.decode()
    assert resolve_url(review) not in viewer.get(change_url(review)).content.decode()
    # they cannot act
    assert viewer.get(resolve_url(review)).status_code == 403
    assert viewer.post(resolve_url(review), {"outcome": "credited", "note": "paid per provider statement"}).status_code == 403
    act(viewer, "retry_payouts", [failed])
    act(viewer, "cancel_payouts", [pending], post="yes")
    assert dict(Payout.objects.values_list("pk", "status")) == {
        review.pk: S.MANUAL_REVIEW,
        failed.pk: S.FAILED,
        pending.pk: S.PENDING,
    }
    assert not PayoutEvent.objects.exclude(actor=None).exists()


def test_nobody_edits_a_payout_through_its_change_form(admin_client, make_payout):
    payout = make_payout(S.MANUAL_REVIEW)
    assert admin_client.post(change_url(payout), {"amount": "1.00", "status": "SUCCEEDED"}).status_code == 403
    payout.refresh_from_db()
    assert (payout.amount, payout.status) == (Decimal("7500.00"), S.MANUAL_REVIEW)


# --- attempts, for support ----------------------------------------------------------------------------


def test_attempts_are_searchable_by_reference_and_read_only(admin_client, make_payout, mtrans):
    payout = make_payout(S.UNKNOWN, provider=mtrans)
    attempt = PayoutAttempt.objects.create(payout=payout, provider=mtrans, kind="SEND", reference="KZABC-MTRANS", outcome="UNKNOWN")
    PayoutAttempt.objects.create(payout=payout, provider=mtrans, kind="INQUIRY", reference="OTHER", outcome="NOT_FOUND")
    url = reverse("admin:wallets_payoutattempt_changelist")
    for query, expected in [
        ({"q": "KZABC-MTRANS"}, [attempt.pk]),
        ({"provider__id__exact": str(mtrans.pk), "kind__exact": "SEND", "outcome__exact": "UNKNOWN"}, [attempt.pk]),
    ]:
        response = admin_client.get(url, query)
        assert response.status_code == 200
        assert [a.pk for a in response.context["cl"].result_list] == expected
    change = reverse("admin:wallets_payoutattempt_change", args=[attempt.pk])
    assert admin_client.get(change).status_code == 200
    assert admin_client.post(change, {"outcome": "CREDITED"}).status_code == 403
    assert admin_client.get(reverse("admin:wallets_payoutattempt_add")).status_code == 403
    attempt.refresh_from_db()
    assert attempt.outcome == "UNKNOWN"


# --- velocity holds (DOMAIN.md §8) ----------------------------------------------------------------


def test_release_sends_a_held_payout_naming_the_operator(admin_client, admin_user, make_payout, enqueued, django_capture_on_commit_callbacks):
    held = make_payout(S.HELD, flags=["velocity"])
    pending = make_payout(S.PENDING)
    with django_capture_on_commit_callbacks(execute=True):
        response = act(admin_client, "release_payouts", [held, pending])
    held.refresh_from_db()
    pending.refresh_from_db()
    assert (held.status, held.flags) == (S.PENDING, ["velocity"])
    assert events(held)[-1] == ("HELD", "PENDING", admin_user.username, "released by an operator")
    assert enqueued == [held.pk]
    assert pending.status == S.PENDING and events(pending)[-1][1] == "PENDING" and len(events(pending)) == 1
    assert message_texts(response) == [
        f"Payout {pending.pk} not released: Only a HELD payout can be released; this one is PENDING.",
        f"Released 1 payout(s): {held.pk}; queued for delivery.",
    ]


def test_a_held_payout_can_be_cancelled(admin_client, admin_user, make_payout):
    held = make_payout(S.HELD, flags=["velocity"])
    act(admin_client, "cancel_payouts", [held], post="yes", note="customer confirmed fraud")
    held.refresh_from_db()
    assert held.status == S.CANCELLED
    assert events(held)[-1] == ("HELD", "CANCELLED", admin_user.username, "customer confirmed fraud")


def test_staff_who_may_only_view_cannot_release(viewer, make_payout, enqueued):
    held = make_payout(S.HELD, flags=["velocity"])
    response = act(viewer, "release_payouts", [held])
    held.refresh_from_db()
    assert held.status == S.HELD and enqueued == []
    assert response.status_code in (200, 302)  # Django answers an action not offered with the list again
