"""The Django admin as operations use it: every page answers, credentials show their secret once,
revoking works, and the books cannot be edited."""

import datetime
import logging
import re
from decimal import Decimal

import pytest
from django.contrib import admin
from django.urls import reverse
from django.utils import timezone

from cashback.models import CashbackRule, Transaction
from cashback.services import Purchase, transaction_record
from partners.models import Partner, PartnerCredential
from partners.selectors import credential_for_key
from partners.services import credential_secret
from wallets.models import Fee, Payout, PayoutAttempt, Provider

KEY_ID = re.compile(r"kzk_[0-9a-f]{24}")
SECRET = re.compile(r"kzs_[A-Za-z0-9_\-]{43}")
CEZBEK_APPS = {"partners", "cashback", "loyalty", "wallets", "reports"}


def admin_url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def books(wallets, ladder, partner, global_rule):
    """One of everything the admin shows: routes (one archived), a purchase with its payout and journey."""
    lajada, _ = partner
    mtrans = Provider.objects.create(code="MTRANS", name="Middletrans", kind=Provider.Kind.AGGREGATOR)
    h2h = Provider.objects.create(code="LSAJAH2H", name="LinkSaja H2H", kind=Provider.Kind.H2H, priority=10)
    Fee.objects.create(provider=h2h, wallet=wallets["LSAJA"], flat_fee=Decimal("1000.00"))
    Fee.objects.create(
        provider=mtrans, wallet=wallets["LSAJA"], flat_fee=Decimal("500.00"), percent_fee=Decimal("0.50")
    )
    archived_fee = Fee.objects.create(
        provider=mtrans, wallet=wallets["LSAJA"], flat_fee=Decimal("9999.00"), archived=True
    )
    txn, created = transaction_record(
        partner=lajada,
        purchase=Purchase(
            partner_ref="INV/1", msisdn="628118770510", quantity=2, amount=Decimal("750000.00"), wallet="LSAJA"
        ),
    )
    assert created and txn.payout.amount == Decimal("7500.00")
    PayoutAttempt.objects.create(payout=txn.payout, provider=mtrans, kind="SEND", reference=f"{txn.kezbek_ref}-MTRANS", outcome="REFUSED")
    _later_books(lajada, mtrans, wallets)
    return {"partner": lajada, "transaction": txn, "archived_fee": archived_fee}


def _later_books(lajada, mtrans, wallets):
    """One of each of the later issues' books, each made by its own service: a batch, a settled
    payout with its webhook delivery and customer email, a settlement run with a line, an invoice,
    a periodic job's run and a reward digest."""
    from cashback.batches import batch_create
    from partners.webhooks import webhook_record
    from reports.services import invoice_generate, settlement_import
    from wallets.notifications import email_record

    batch_create(
        partner=lajada,
        data=b"partner_ref,msisdn,quantity,amount,wallet\nB/1,628118770512,1,10000.00,LSAJA\n",
        source="api",
        filename="batch.csv",
    )
    Partner.objects.filter(pk=lajada.pk).update(webhook_url="https://partner.example/hooks")
    paid, created = transaction_record(
        partner=Partner.objects.get(pk=lajada.pk),
        purchase=Purchase(
            partner_ref="INV/2", msisdn="628118770511", quantity=1, amount=Decimal("100000.00"), wallet="LSAJA", email="a@b.id"
        ),
    )
    assert created
    reference = f"{paid.kezbek_ref}-MTRANS"
    Payout.objects.filter(pk=paid.payout.pk).update(status="SUCCEEDED", provider=mtrans, reference=reference, fee=Decimal("505.00"))
    payout = Payout.objects.get(pk=paid.payout.pk)
    assert webhook_record(payout=payout) is not None
    assert email_record(payout=payout) is not None
    day = timezone.now().astimezone(datetime.UTC).date()
    settlement = (
        "provider_ref,client_ref,wallet,msisdn,amount,fee,status,settled_at\n"
        f"MT-1,{reference},LSAJA,628118770511,{payout.amount},505.00,SUCCESS,{day.isoformat()}T01:00:00Z\n"
    )
    settlement_import(provider_code="MTRANS", content=settlement.encode(), file_name="MTRANS-settlement.csv", settlement_date=day)
    last_month = (timezone.localdate().replace(day=1) - datetime.timedelta(days=1)).replace(day=1)
    invoice_generate(partner=lajada, month=last_month, email=False)
    # what the periodic jobs leave: a job's run, and the day's reward digest for the paid customer
    from cezbek.jobs import job_run_once
    from cezbek.schedule import jobs
    from wallets.digest import reward_digest_send
    from wallets.models import PayoutEvent

    job_run_once(job=next(job for job in jobs() if job.name == "tier-expiry"), body=lambda: {"demoted": 0})
    PayoutEvent.objects.create(payout=payout, from_status="SENDING", to_status="SUCCEEDED", note="credited by MTRANS")
    assert reward_digest_send(day=timezone.localdate()).sent == 1


def issue_through_action(admin_client, partner: Partner):
    return admin_client.post(
        admin_url(Partner, "changelist"), {"action": "issue_credentials", "_selected_action": [partner.pk]}
    )


# --- every page answers ---------------------------------------------------------------------


def test_every_changelist_and_add_page_answers(admin_client, books):
    for model, model_admin in admin.site._registry.items():
        # when staff open the changelist and the add page
        changelist = admin_client.get(admin_url(model, "changelist"))
        add = admin_client.get(admin_url(model, "add"))
        # then both answer; models written only by services have no add page at all
        assert changelist.status_code == 200, model
        expected_add = 200 if model_admin.has_add_permission(changelist.wsgi_request) else 403
        assert add.status_code == expected_add, model


def test_every_change_page_of_an_existing_object_answers(admin_client, books):
    for model in admin.site._registry:
        obj = model._default_manager.order_by("pk").first()
        if model._meta.app_label in CEZBEK_APPS:
            assert obj is not None, f"books fixture has no {model.__name__}"
        elif obj is None:
            continue  # Django's and Celery beat's own models, empty in a fresh database
        response = admin_client.get(admin_url(model, "change", obj.pk))
        assert response.status_code == 200, model


def test_changelists_answer_with_filters_search_and_dates(admin_client, books):
    for model, query, expected in [
        (Transaction, {"q": "08118770510"}, 1),
        (Transaction, {"q": books["transaction"].kezbek_ref}, 1),
        (Transaction, {"created_at__year": str(timezone.now().year)}, 2),  # INV/1 and the settled INV/2
        (Payout, {"q": "+628118770510", "status": "PENDING"}, 1),
        (Payout, {"status": "SUCCEEDED"}, 1),
        (Fee, {"archived": "yes"}, 1),
        (CashbackRule, {"archived": "no", "active": "1", "partner__isnull": "True"}, 1),
    ]:
        response = admin_client.get(admin_url(model, "changelist"), query)
        assert response.status_code == 200, (model, query)
        assert response.context["cl"].result_count == expected, (model, query)


# --- credentials ----------------------------------------------------------------------------


def test_issue_action_shows_the_new_secret_exactly_once(admin_client, partner, caplog):
    lajada, _ = partner
    before = set(PartnerCredential.objects.values_list("key_id", flat=True))
    caplog.set_level(logging.DEBUG)
    # when an operator runs "Issue / rotate credentials" on the partner
    response = issue_through_action(admin_client, lajada)
    # then the page shows one new key id and its secret, once, and is never cached
    assert response.status_code == 200
    page = response.content.decode()
    secrets_shown = SECRET.findall(page)
    assert len(secrets_shown) == 1
    secret = secrets_shown[0]
    (key_id,) = set(KEY_ID.findall(page)) - before
    assert page.count(secret) == 1
    assert "no-store" in response["Cache-Control"]
    # and the key works: stored encrypted, decrypting to the secret shown
    credential = PartnerCredential.objects.get(key_id=key_id)
    assert credential.partner == lajada
    assert secret not in credential.secret_encrypted
    assert credential_secret(credential=credential) == secret
    assert credential_for_key(key_id=key_id) == credential
    # and the older key keeps working (rotation)
    assert all(credential_for_key(key_id=k) is not None for k in before)
    # and the secret is nowhere else: not in later pages, the session, the logs or the admin history
    for url in [
        admin_url(Partner, "changelist"),
        admin_url(Partner, "change", lajada.pk),
        admin_url(Partner, "credentials", lajada.pk),
    ]:
        later = admin_client.get(url).content.decode()
        assert secret not in later and key_id not in later, url
    assert secret not in str(dict(admin_client.session.items()))
    assert all(secret not in r.getMessage() and key_id not in r.getMessage() for r in caplog.records)
    history = admin_client.get(admin_url(Partner, "history", lajada.pk)).content.decode()
    assert f"{key_id[:8]}…" in history and key_id not in history and secret not in history


def test_issue_action_on_several_partners_gives_each_its_own_key(admin_client, make_partner):
    lajada, _ = make_partner("LAJADA")
    tokmed, _ = make_partner("TOKMED", active=False)
    response = admin_client.post(
        admin_url(Partner, "changelist"),
        {"action": "issue_credentials", "_selected_action": [lajada.pk, tokmed.pk]},
    )
    assert response.status_code == 200
    assert len(SECRET.findall(response.content.decode())) == 2
    assert PartnerCredential.objects.filter(partner=lajada).count() == 2
    assert PartnerCredential.objects.filter(partner=tokmed).count() == 2


def test_credentials_page_issues_a_key_and_shows_prefixes_only(admin_client, partner):
    lajada, issued = partner
    url = admin_url(Partner, "credentials", lajada.pk)
    # the page lists the key by its prefix, never the whole key id
    page = admin_client.get(url).content.decode()
    assert f"{issued.key_id[:8]}…" in page
    assert issued.key_id not in page and issued.secret not in page
    # when the operator issues a new key there
    response = admin_client.post(url)
    assert response.status_code == 200
    (secret,) = SECRET.findall(response.content.decode())
    newest = PartnerCredential.objects.filter(partner=lajada).order_by("-id").first()
    assert credential_secret(credential=newest) == secret
    assert PartnerCredential.objects.filter(partner=lajada, revoked_at__isnull=True).count() == 2


def test_change_page_never_shows_the_secret_or_the_full_key(admin_client, partner):
    lajada, issued = partner
    page = admin_client.get(admin_url(Partner, "change", lajada.pk)).content.decode()
    credential = PartnerCredential.objects.get(key_id=issued.key_id)
    assert f"{issued.key_id[:8]}…" in page
    for hidden in [issued.key_id, issued.secret, credential.secret_encrypted]:
        assert hidden not in page


def test_revoking_in_the_admin_refuses_the_key(admin_client, partner):
    lajada, issued = partner
    credential = PartnerCredential.objects.get(key_id=issued.key_id)
    url = admin_url(Partner, "credential_revoke", lajada.pk, credential.pk)
    # when the operator presses the key's revoke button
    response = admin_client.post(url)
    # then the key no longer authenticates
    assert response.status_code == 302
    assert response["Location"] == admin_url(Partner, "credentials", lajada.pk)
    assert credential_for_key(key_id=issued.key_id) is None
    credential.refresh_from_db()
    revoked_at = credential.revoked_at
    assert revoked_at is not None
    # and revoking again changes nothing
    assert admin_client.post(url).status_code == 302
    credential.refresh_from_db()
    assert credential.revoked_at == revoked_at


def test_revoke_needs_a_post_and_the_partners_own_key(admin_client, make_partner):
    lajada, lajada_key = make_partner("LAJADA")
    tokmed, _ = make_partner("TOKMED")
    credential = PartnerCredential.objects.get(key_id=lajada_key.key_id)
    assert admin_client.get(admin_url(Partner, "credential_revoke", lajada.pk, credential.pk)).status_code == 405
    assert admin_client.post(admin_url(Partner, "credential_revoke", tokmed.pk, credential.pk)).status_code == 404
    assert credential_for_key(key_id=lajada_key.key_id) is not None


def test_staff_without_change_permission_cannot_issue_or_revoke(client, django_user_model, partner):
    from django.contrib.auth.models import Permission

    lajada, issued = partner
    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(
        Permission.objects.get(codename="view_partner"), Permission.objects.get(codename="view_partnercredential")
    )
    client.force_login(viewer)
    credential = PartnerCredential.objects.get(key_id=issued.key_id)
    before = PartnerCredential.objects.count()
    assert client.get(admin_url(Partner, "credentials", lajada.pk)).status_code == 200
    assert client.post(admin_url(Partner, "credentials", lajada.pk)).status_code == 403
    assert client.post(admin_url(Partner, "credential_revoke", lajada.pk, credential.pk)).status_code == 403
    assert PartnerCredential.objects.count() == before
    assert credential_for_key(key_id=issued.key_id) is not None


# --- the books and the configuration ----------------------------------------------------------


def test_transaction_money_cannot_be_changed_in_the_admin(admin_client, books):
    txn = books["transaction"]
    url = admin_url(Transaction, "change", txn.pk)
    page = admin_client.get(url).content.decode()
    for field in ["amount", "cashback", "reward", "total", "quantity", "msisdn"]:
        assert f'name="{field}"' not in page
    # when someone posts a changed amount anyway
    response = admin_client.post(url, {"amount": "1.00", "cashback": "999999.00", "total": "999999.00"})
    # then it is refused and the row is as it was
    assert response.status_code == 403
    fresh = Transaction.objects.get(pk=txn.pk)
    assert (fresh.amount, fresh.cashback, fresh.reward, fresh.total) == (
        Decimal("750000.00"), Decimal("7500.00"), Decimal("0.00"), Decimal("7500.00"),
    )
    assert admin_client.post(admin_url(Transaction, "delete", txn.pk), {"post": "yes"}).status_code == 403
    assert Transaction.objects.filter(pk=txn.pk).exists()


def test_payout_cannot_be_changed_in_the_admin(admin_client, books):
    payout = books["transaction"].payout
    url = admin_url(Payout, "change", payout.pk)
    page = admin_client.get(url).content.decode()
    assert 'name="amount"' not in page and 'name="status"' not in page
    assert "PENDING" in page  # the history inline
    assert admin_client.post(url, {"amount": "1.00", "status": "SUCCEEDED"}).status_code == 403
    payout.refresh_from_db()
    assert (payout.amount, payout.status) == (Decimal("7500.00"), "PENDING")


def test_archived_fees_are_hidden_by_default_and_read_only(admin_client, books):
    archived = books["archived_fee"]
    listed = admin_client.get(admin_url(Fee, "changelist")).context["cl"].result_list
    assert archived not in listed and len(listed) == 2
    url = admin_url(Fee, "change", archived.pk)
    page = admin_client.get(url).content.decode()
    assert 'name="flat_fee"' not in page
    assert admin_client.post(url, {"flat_fee": "0.00", "percent_fee": "0.00"}).status_code == 403
    archived.refresh_from_db()
    assert archived.flat_fee == Decimal("9999.00")


def test_cashback_rule_is_validated_by_the_model(admin_client, partner):
    lajada, _ = partner
    now = timezone.localtime()
    form = {
        "name": "LAJADA 2%",
        "partner": lajada.pk,
        "active": "on",
        "percentage": "2.00",
        "min_quantity": "5",
        "max_quantity": "2",
        "min_amount": "0.00",
        "valid_from_0": now.strftime("%Y-%m-%d"),
        "valid_from_1": now.strftime("%H:%M:%S"),
    }
    add_page = admin_client.get(admin_url(CashbackRule, "add")).content.decode()
    assert "admin-autocomplete" in add_page  # partner is chosen by autocomplete
    # when the quantity range is upside down: the form says so and nothing is stored
    response = admin_client.post(admin_url(CashbackRule, "add"), form)
    assert response.status_code == 200
    assert "Must be at least min_quantity." in response.content.decode()
    assert not CashbackRule.objects.exists()
    # when it is fixed: stored, with an aware validity start
    response = admin_client.post(admin_url(CashbackRule, "add"), {**form, "max_quantity": "10"})
    assert response.status_code == 302
    rule = CashbackRule.objects.get()
    assert (rule.partner, rule.percentage, rule.max_quantity) == (lajada, Decimal("2.00"), 10)
    assert timezone.is_aware(rule.valid_from)


def test_a_second_live_route_is_a_form_error_not_a_crash(admin_client, books, wallets):
    # given a live MTRANS→LSAJA fee (and an archived one, which does not count)
    mtrans = Provider.objects.get(code="MTRANS")
    before = Fee.objects.count()
    # when staff add another live fee for the same route
    response = admin_client.post(
        admin_url(Fee, "add"),
        {"provider": mtrans.pk, "wallet": wallets["LSAJA"].pk, "flat_fee": "1.00", "percent_fee": "0", "active": "1"},
    )
    # then the form says why and nothing is stored
    assert response.status_code == 200
    assert "Another live fee already has this provider and wallet." in response.content.decode()
    assert Fee.objects.count() == before
    # while a route with no live fee is accepted
    response = admin_client.post(
        admin_url(Fee, "add"),
        {"provider": mtrans.pk, "wallet": wallets["GPAID"].pk, "flat_fee": "1.00", "percent_fee": "0", "active": "1"},
    )
    assert response.status_code == 302
    assert Fee.objects.count() == before + 1


def test_loyalty_state_page_shows_the_newest_journey_entries_only(admin_client, ladder, partner):
    from loyalty.admin import JOURNEY_INLINE_LIMIT
    from loyalty.models import JourneyEntry, LoyaltyState

    lajada, _ = partner
    bronze = ladder["BRONZE"]
    now = timezone.now()
    state = LoyaltyState.objects.create(partner=lajada, msisdn="628118770510", tier=bronze, entered_at=now)
    entries = JourneyEntry.objects.bulk_create(
        JourneyEntry(state=state, reason="PURCHASE", tier_before=bronze, tier_after=bronze, count=n, created_at=now)
        for n in range(JOURNEY_INLINE_LIMIT + 10)
    )
    response = admin_client.get(admin_url(LoyaltyState, "change", state.pk))
    assert response.status_code == 200
    (journey,) = [f for f in response.context["inline_admin_formsets"] if f.opts.model is JourneyEntry]
    shown = [form.instance.pk for form in journey.formset.forms]
    newest = sorted((e.pk for e in JourneyEntry.objects.filter(state=state)), reverse=True)
    assert shown == newest[:JOURNEY_INLINE_LIMIT]
    assert len(entries) == JOURNEY_INLINE_LIMIT + 10
    full = admin_client.get(admin_url(JourneyEntry, "changelist"), {"state__id__exact": state.pk})
    assert full.status_code == 200 and full.context["cl"].result_count == JOURNEY_INLINE_LIMIT + 10
