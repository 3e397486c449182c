"""Staff roles through the admin (cezbek/roles.py): real staff users in the Operations and Finance groups,
logged in with the test client, do what their role allows and get 403 (or nothing changes) elsewhere."""

import importlib
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Group, Permission
from django.core.files import File
from django.core.management import call_command
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.forms import MultiWidget
from django.urls import reverse
from django.utils import timezone

from cashback.models import CashbackRule
from cashback.services import Purchase, transaction_record
from cezbek.roles import FINANCE, OPERATIONS, ROLES, roles_sync
from partners.models import Partner, PartnerCredential
from partners.selectors import credential_for_key
from wallets.models import Fee, Payout, PayoutEvent, Provider

S = Payout.Status


def admin_url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def perms_of(group_name: str) -> set[str]:
    return {
        f"{app_label}.{codename}"
        for app_label, codename in Group.objects.get(name=group_name).permissions.values_list(
            "content_type__app_label", "codename"
        )
    }


def form_data(response, **overrides) -> dict:
    """What the browser would post back from a rendered add/change page, with `overrides` typed in."""
    data = {}
    forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        forms += [inline.formset.management_form, *inline.formset.forms]
    for form in forms:
        for bound in form:
            value = bound.value()
            if value is None or value is False or isinstance(value, File):
                continue  # unchecked boxes are not sent; no file sent keeps the stored one
            if isinstance(bound.field.widget, MultiWidget):  # date and time as two inputs
                for i, part in enumerate(bound.field.widget.decompress(value)):
                    data[f"{bound.html_name}_{i}"] = part
                continue
            data[bound.html_name] = "on" if value is True else value
    data.update(overrides)
    return data


def saved(response) -> bool:
    """The admin redirects after a save; a 200 re-renders the form with its errors (shown on failure)."""
    if response.status_code == 200 and response.context and "adminform" in response.context:
        errors = response.context["adminform"].form.errors
        inline_errors = [f.errors for f in response.context["inline_admin_formsets"]]
        raise AssertionError(f"not saved: {errors.as_text()} {inline_errors}")
    return response.status_code == 302


@pytest.fixture
def books(wallets, ladder, partner, global_rule):
    """A route with its fee, and payouts a purchase created, put in the states operators act on."""
    lajada, issued = partner
    mtrans = Provider.objects.create(code="MTRANS", name="Middletrans", kind=Provider.Kind.AGGREGATOR)
    fee = Fee.objects.create(provider=mtrans, wallet=wallets["LSAJA"], flat_fee=Decimal("1500.00"))
    payouts = {}
    for n, status in enumerate([S.FAILED, S.MANUAL_REVIEW, S.PENDING], start=1):
        txn, created = transaction_record(
            partner=lajada,
            purchase=Purchase(
                partner_ref=f"INV/{n}",
                msisdn=f"6281187705{n:02d}",
                quantity=1,
                amount=Decimal("750000.00"),
                wallet="LSAJA",
            ),
        )
        assert created
        Payout.objects.filter(pk=txn.payout.pk).update(status=status)
        payouts[status] = Payout.objects.get(pk=txn.payout.pk)
    return {"partner": lajada, "key": issued, "rule": global_rule, "fee": fee, "provider": mtrans, "payouts": payouts}


def rule_form(partner: Partner, **changes) -> dict:
    now = timezone.localtime()
    return {
        "name": "LAJADA 2%",
        "partner": partner.pk,
        "active": "on",
        "percentage": "2.00",
        "min_quantity": "1",
        "min_amount": "0.00",
        "valid_from_0": now.strftime("%Y-%m-%d"),
        "valid_from_1": now.strftime("%H:%M:%S"),
        **changes,
    }


# --- the groups ---------------------------------------------------------------------------------


def test_the_groups_exist_after_migrate_with_their_permissions(db):
    # given a database migrated from scratch (pytest-django's test database)
    assert set(Group.objects.filter(name__in=[OPERATIONS, FINANCE]).values_list("name", flat=True)) == {
        OPERATIONS,
        FINANCE,
    }
    ops, fin = perms_of(OPERATIONS), perms_of(FINANCE)
    # then Operations change the business and see the books; Finance see everything and change nothing of it
    assert {
        "partners.add_partner",
        "partners.change_partner",
        "cashback.change_cashbackrule",
        "wallets.change_fee",
        "wallets.change_payout",
        "loyalty.change_tierlevel",
        "cashback.view_transaction",
    } <= ops
    assert {
        "partners.view_partner",
        "cashback.view_cashbackrule",
        "wallets.view_fee",
        "wallets.view_payout",
        "cashback.view_transaction",
        "loyalty.view_journeyentry",
    } <= fin
    assert not {
        p
        for p in fin
        if p.split(".")[0] in {"partners", "cashback", "loyalty", "wallets"}
        and not p.split(".")[1].startswith(("view_", "export_"))
    }
    # and neither manages staff accounts, nor deletes what history points to
    assert not {p for p in ops | fin if p.startswith("auth.")}
    assert not {"partners.delete_partner", "wallets.delete_payout", "cashback.delete_transaction"} & (ops | fin)


def test_the_data_migration_itself_creates_the_groups(db):
    # given a database whose groups are gone
    Group.objects.filter(name__in=ROLES).delete()
    # when the data migration runs against the models as they were at that migration
    migration = importlib.import_module("partners.migrations.0003_staff_roles")
    state_apps = MigrationLoader(connection).project_state(("partners", "0003_staff_roles")).apps
    migration.create_staff_groups(state_apps, SimpleNamespace(connection=connection))
    # then both groups are back, holding their permissions of the models that existed then
    assert {"partners.change_partner", "wallets.change_payout", "cashback.add_cashbackrule"} <= perms_of(OPERATIONS)
    assert "partners.view_partner" in perms_of(FINANCE)
    assert "partners.change_partner" not in perms_of(FINANCE)


def test_roles_sync_is_idempotent_and_exact(db):
    before = {name: (Group.objects.get(name=name).pk, perms_of(name)) for name in ROLES}
    # given someone granted Finance more by hand
    Group.objects.get(name=FINANCE).permissions.add(Permission.objects.get(codename="change_partner"))
    # when the roles are synced, twice
    first = roles_sync()
    second = roles_sync()
    # then the same two groups hold exactly what the roles say, and the second run changed nothing
    assert first == second
    assert {name: (Group.objects.get(name=name).pk, perms_of(name)) for name in ROLES} == before
    assert Group.objects.filter(name__in=ROLES).count() == 2


@pytest.mark.django_db(transaction=True)
def test_the_groups_survive_a_flush():
    # `flush` (every transactional test's teardown) empties auth_group, then sends post_migrate
    call_command("flush", interactive=False, verbosity=0)
    # and the handler in partners/apps.py has put both groups back, complete
    assert {"partners.change_partner", "wallets.change_payout"} <= perms_of(OPERATIONS)
    assert {"partners.view_partner", "cashback.export_transaction"} <= perms_of(FINANCE)


def test_every_role_permission_names_an_installed_model():
    # a typo in ROLES would silently grant nothing: each entry must name a model of its app
    for role, names in ROLES.items():
        for name in names:
            app_label, codename = name.split(".")
            action, model_name = codename.split("_", 1)
            assert action in {"add", "change", "delete", "view", "export"}, name
            assert apps.get_model(app_label, model_name) is not None, (role, name)


# --- Operations ---------------------------------------------------------------------------------


def test_operations_add_a_partner_and_change_it(ops):
    # when an operator creates a partner through the add form
    response = ops.post(
        admin_url(Partner, "add"),
        form_data(ops.get(admin_url(Partner, "add")), code="ACME", name="Acme Mart", email="ops@acme.id", active="on"),
    )
    # then it is stored and onboarding goes on at its credentials page
    acme = Partner.objects.get(code="ACME")
    assert response.status_code == 302
    assert response["Location"] == admin_url(Partner, "credentials", acme.pk)
    assert (acme.name, acme.email, acme.active) == ("Acme Mart", "ops@acme.id", True)
    # when they set its webhook and rate limit
    change = admin_url(Partner, "change", acme.pk)
    response = ops.post(
        change, form_data(ops.get(change), webhook_url="https://hooks.acme.id/cezbek", rate_limit_per_minute="1200")
    )
    assert saved(response)
    acme.refresh_from_db()
    assert (acme.webhook_url, acme.rate_limit_per_minute) == ("https://hooks.acme.id/cezbek", 1200)


def test_operations_add_and_change_a_cashback_rule(ops, books):
    lajada = books["partner"]
    response = ops.post(admin_url(CashbackRule, "add"), rule_form(lajada))
    assert response.status_code == 302
    rule = CashbackRule.objects.get(name="LAJADA 2%")
    assert (rule.partner, rule.percentage) == (lajada, Decimal("2.00"))
    change = admin_url(CashbackRule, "change", rule.pk)
    assert saved(ops.post(change, form_data(ops.get(change), percentage="2.50")))
    rule.refresh_from_db()
    assert rule.percentage == Decimal("2.50")


def test_operations_issue_and_revoke_keys_and_act_on_payouts(ops, books):
    lajada, key, payouts = books["partner"], books["key"], books["payouts"]
    # issue: the new secret is on the page
    response = ops.post(admin_url(Partner, "credentials", lajada.pk))
    assert response.status_code == 200 and "kzs_" in response.content.decode()
    assert PartnerCredential.objects.filter(partner=lajada, revoked_at__isnull=True).count() == 2
    # revoke the first key
    credential = PartnerCredential.objects.get(key_id=key.key_id)
    assert ops.post(admin_url(Partner, "credential_revoke", lajada.pk, credential.pk)).status_code == 302
    assert credential_for_key(key_id=key.key_id) is None
    # retry a FAILED payout and resolve one in MANUAL_REVIEW
    failed, review = payouts[S.FAILED], payouts[S.MANUAL_REVIEW]
    ops.post(admin_url(Payout, "changelist"), {"action": "retry_payouts", ACTION_CHECKBOX_NAME: [failed.pk]})
    response = ops.post(
        admin_url(Payout, "resolve", review.pk), {"outcome": "credited", "note": "paid per MTRANS statement"}
    )
    assert response.status_code == 302
    assert dict(Payout.objects.filter(pk__in=[failed.pk, review.pk]).values_list("pk", "status")) == {
        failed.pk: S.PENDING,
        review.pk: S.SUCCEEDED,
    }
    assert set(PayoutEvent.objects.filter(actor__username="rina.ops").values_list("to_status", flat=True)) == {
        S.PENDING,
        S.SUCCEEDED,
    }


def test_only_operations_upload_purchase_batches(ops, finance, books):
    from cashback.models import Batch

    assert ops.get(admin_url(Batch, "add")).status_code == 200
    assert finance.get(admin_url(Batch, "add")).status_code == 403
    assert finance.post(admin_url(Batch, "add"), {"partner": books["partner"].pk}).status_code == 403
    assert finance.get(admin_url(Batch, "changelist")).status_code == 200
    assert not Batch.objects.exists()


def test_only_operations_edit_the_customer_email_and_resend_notifications(ops, finance, books):
    from partners.models import WebhookDelivery
    from wallets.models import EmailNotification, EmailTemplate

    template, _ = EmailTemplate.objects.get_or_create(
        purpose=EmailTemplate.Purpose.PAYOUT_SUCCEEDED, defaults={"subject": "Cashback {reference}", "body_text": "Hi {msisdn}"}
    )
    assert ops.get(admin_url(EmailTemplate, "change", template.pk)).status_code == 200
    form = {"purpose": template.purpose, "subject": "Your cashback {reference}", "body_text": "Paid to {msisdn}.", "body_html": ""}
    assert finance.post(admin_url(EmailTemplate, "change", template.pk), form).status_code == 403
    template.refresh_from_db()
    assert template.subject != "Your cashback {reference}"
    response = ops.post(admin_url(EmailTemplate, "change", template.pk), form)
    assert response.status_code == 302, response.content[:2000]
    template.refresh_from_db()
    assert template.subject == "Your cashback {reference}"
    def offered(client, model) -> set[str]:
        form = client.get(admin_url(model, "changelist")).context["action_form"]
        return {name for name, _ in form.fields["action"].choices} if form is not None else set()

    for model, action in [(WebhookDelivery, "resend"), (EmailNotification, "send_again")]:
        assert action in offered(ops, model), model
        assert action not in offered(finance, model), model


def test_operations_see_the_books_but_cannot_export_them(ops, finance, books):
    from cashback.models import Transaction

    for model in [Transaction, Payout]:
        # Operations see the books
        assert ops.get(admin_url(model, "changelist")).status_code == 200, model
        # but only Finance export them
        export = admin_url(model, "export")
        assert ops.get(export).status_code == 403, model
        response = finance.get(export)
        assert response.status_code == 200, model
        assert response["Content-Type"].startswith("text/csv"), model


@pytest.fixture
def invoice(books):
    from datetime import date, datetime
    from zoneinfo import ZoneInfo

    from reports.models import Invoice

    jakarta = ZoneInfo("Asia/Jakarta")
    return Invoice.objects.create(
        partner=books["partner"],
        month=date(2026, 10, 1),
        period_start=datetime(2026, 10, 1, tzinfo=jakarta),
        period_end=datetime(2026, 11, 1, tzinfo=jakarta),
        transactions=3,
        purchase_amount=Decimal("2250000.00"),
        cashback=Decimal("22500.00"),
        reward=Decimal("0.00"),
        payouts_succeeded=0,
        payouts_succeeded_amount=Decimal("0.00"),
        provider_fees=Decimal("0.00"),
        file="invoices/CZB-LAJADA-2026-10.csv",
        generated_at=timezone.now(),
    )


def test_operations_see_finance_objects_but_cannot_change_them(ops, finance, invoice):
    from reports.models import Invoice, SettlementRun

    # Operations read invoices and settlement runs
    assert ops.get(admin_url(Invoice, "changelist")).status_code == 200
    assert ops.get(admin_url(Invoice, "change", invoice.pk)).status_code == 200
    assert ops.get(admin_url(SettlementRun, "changelist")).status_code == 200
    # but cannot import a settlement file, change an invoice or email it again
    assert ops.get(admin_url(SettlementRun, "add")).status_code == 403
    assert ops.post(admin_url(SettlementRun, "add"), {}).status_code == 403
    assert ops.post(admin_url(Invoice, "change", invoice.pk), {"cashback": "0.00"}).status_code == 403
    assert "send_again" not in ops.get(admin_url(Invoice, "changelist")).content.decode()
    ops.post(admin_url(Invoice, "changelist"), {"action": "send_again", ACTION_CHECKBOX_NAME: [invoice.pk]})
    fresh = Invoice.objects.get(pk=invoice.pk)
    assert (fresh.cashback, fresh.emailed_at, fresh.email_error) == (Decimal("22500.00"), None, "")
    # while Finance get the import form and the "email again" action
    assert finance.get(admin_url(SettlementRun, "add")).status_code == 200
    assert "send_again" in finance.get(admin_url(Invoice, "changelist")).content.decode()


# --- Finance --------------------------------------------------------------------------------------


def test_finance_view_a_partner_but_cannot_change_add_or_key_it(finance, books):
    lajada, key = books["partner"], books["key"]
    change = admin_url(Partner, "change", lajada.pk)
    # they can read the partner
    page = finance.get(change)
    assert page.status_code == 200
    assert 'name="name"' not in page.content.decode() and "Lajada" in page.content.decode()
    # but posting a change, adding a partner, issuing or revoking a key is refused, and nothing changes
    assert finance.post(change, {"code": "LAJADA", "name": "Hijacked", "active": "on"}).status_code == 403
    assert finance.get(admin_url(Partner, "add")).status_code == 403
    assert finance.post(admin_url(Partner, "add"), {"code": "EVIL", "name": "Evil"}).status_code == 403
    assert finance.post(admin_url(Partner, "credentials", lajada.pk)).status_code == 403
    credential = PartnerCredential.objects.get(key_id=key.key_id)
    assert finance.post(admin_url(Partner, "credential_revoke", lajada.pk, credential.pk)).status_code == 403
    response = finance.post(
        admin_url(Partner, "changelist"), {"action": "issue_credentials", ACTION_CHECKBOX_NAME: [lajada.pk]}
    )
    assert "kzs_" not in response.content.decode()
    lajada.refresh_from_db()
    assert lajada.name == "Lajada" and not Partner.objects.filter(code="EVIL").exists()
    assert PartnerCredential.objects.filter(partner=lajada).count() == 1
    assert credential_for_key(key_id=key.key_id) is not None


def test_finance_cannot_change_a_rule_or_a_fee(finance, books):
    rule, fee = books["rule"], books["fee"]
    assert finance.get(admin_url(CashbackRule, "change", rule.pk)).status_code == 200
    assert (
        finance.post(
            admin_url(CashbackRule, "change", rule.pk), rule_form(books["partner"], percentage="50.00")
        ).status_code
        == 403
    )
    assert finance.post(admin_url(CashbackRule, "add"), rule_form(books["partner"])).status_code == 403
    assert finance.post(admin_url(CashbackRule, "delete", rule.pk), {"post": "yes"}).status_code == 403
    assert (
        finance.post(
            admin_url(Fee, "change", fee.pk),
            {
                "provider": fee.provider_id,
                "wallet": fee.wallet_id,
                "flat_fee": "0.00",
                "percent_fee": "0.00",
                "active": "on",
            },
        ).status_code
        == 403
    )
    rule.refresh_from_db()
    fee.refresh_from_db()
    assert (rule.percentage, fee.flat_fee) == (Decimal("1.00"), Decimal("1500.00"))
    assert CashbackRule.objects.count() == 1


def test_finance_cannot_run_payout_actions(finance, books):
    payouts = books["payouts"]
    failed, review, pending = payouts[S.FAILED], payouts[S.MANUAL_REVIEW], payouts[S.PENDING]
    listing = finance.get(admin_url(Payout, "changelist"))
    assert listing.status_code == 200
    assert "retry_payouts" not in listing.content.decode() and "cancel_payouts" not in listing.content.decode()
    # resolving is refused outright
    assert finance.get(admin_url(Payout, "resolve", review.pk)).status_code == 403
    assert (
        finance.post(admin_url(Payout, "resolve", review.pk), {"outcome": "credited", "note": "x"}).status_code == 403
    )
    # the actions are not offered; posting them anyway changes nothing
    finance.post(admin_url(Payout, "changelist"), {"action": "retry_payouts", ACTION_CHECKBOX_NAME: [failed.pk]})
    finance.post(
        admin_url(Payout, "changelist"), {"action": "cancel_payouts", ACTION_CHECKBOX_NAME: [pending.pk], "post": "yes"}
    )
    assert finance.post(admin_url(Payout, "change", failed.pk), {"status": "SUCCEEDED"}).status_code == 403
    assert dict(Payout.objects.values_list("pk", "status")) == {
        failed.pk: S.FAILED,
        review.pk: S.MANUAL_REVIEW,
        pending.pk: S.PENDING,
    }
    assert not PayoutEvent.objects.filter(actor__isnull=False).exists()


def test_finance_hold_the_export_permissions(finance, books):
    assert {"cashback.export_transaction", "wallets.export_payout"} <= perms_of(FINANCE)


def test_staff_see_what_the_periodic_jobs_did_and_the_digests_sent_read_only(ops, finance, db):
    from datetime import date, timedelta

    from reports.models import JobRun, RewardDigest

    started = timezone.now() - timedelta(minutes=3)
    done = JobRun.objects.create(
        job="tier-expiry", period="2026-11-21", status=JobRun.Status.DONE, started_at=started,
        finished_at=started + timedelta(seconds=12.5), result={"demoted": 7}, runner="worker-1:4242",
    )
    failed = JobRun.objects.create(
        job="settlement-fetch", period="2026-11-21", status=JobRun.Status.FAILED, started_at=started, error="MTRANS answered 503",
    )
    digest = RewardDigest.objects.create(
        email="budi@example.co.id", day=date(2026, 11, 21), status=RewardDigest.Status.SENT, payouts=3, total=Decimal("22500.00"),
    )
    for staff in (ops, finance):
        runs = staff.get(admin_url(JobRun, "changelist"))
        assert runs.context["cl"].result_count == 2 and "12.5 s" in runs.content.decode()  # tier-expiry's duration
        page = staff.get(admin_url(JobRun, "change", failed.pk))
        assert page.status_code == 200 and "MTRANS answered 503" in page.content.decode()
        only_failed = staff.get(admin_url(JobRun, "changelist") + "?status__exact=FAILED").context["cl"]
        assert [run.pk for run in only_failed.result_list] == [failed.pk]
        digests = staff.get(admin_url(RewardDigest, "changelist"))
        assert digests.status_code == 200 and "budi@example.co.id" in digests.content.decode()
        # written by the jobs only: nobody adds, edits or deletes them here
        assert staff.get(admin_url(JobRun, "add")).status_code == 403
        assert staff.post(admin_url(JobRun, "change", done.pk), {"status": "FAILED"}).status_code == 403
        assert staff.post(admin_url(RewardDigest, "delete", digest.pk), {"post": "yes"}).status_code == 403
    assert JobRun.objects.get(pk=done.pk).status == JobRun.Status.DONE and RewardDigest.objects.filter(pk=digest.pk).exists()
