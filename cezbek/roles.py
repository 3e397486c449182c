"""Staff roles in the admin: who may change what (DOMAIN.md "Who is who").

Two groups, defined here and nowhere else, so that every database has the same ones:

- **Operations** run the business: partners and their API keys, cashback rules, batch uploads of
  purchases, the loyalty ladder, wallets, providers, fees, payouts (the retry / cancel / resolve / release actions need `change_payout`;
  a payout's form itself stays read-only for everyone), the customer email template, and re-sending
  webhooks and emails.
- **Finance** close the books: settlement runs and their lines, invoices, and the CSV exports.

Both groups may *view* every model of Cezbek's own apps, including models added after this file
was written: a new model is visible read-only to both until a line here lets someone change it.
Nothing is deleted that history points to (the database refuses: every such foreign key is
PROTECT); partners, wallets and providers are deactivated, never deleted, so no role deletes them.

`roles_sync()` makes each group hold exactly its role's permissions that exist in the database. It
runs from the data migration `partners/0003_staff_roles` and again after every `migrate`
(`partners/apps.py`, post_migrate), which attaches the permissions of models and custom permissions
added later (reconciliation, exports). A permission granted to one of these groups by hand is taken
away by the next migrate: grant extras to a user or another group.
"""

from collections.abc import Iterable

from django.apps import apps as global_apps
from django.db import DEFAULT_DB_ALIAS, transaction

OPERATIONS = "Operations"
FINANCE = "Finance"

# Cezbek's own apps: both roles view everything in them (never Django's users and groups).
VIEW_ALL_APPS = ("partners", "cashback", "loyalty", "wallets", "reports")


def _perms(model: str, *actions: str) -> set[str]:
    """`_perms("partners.partner", "add", "change")` → {"partners.add_partner", "partners.change_partner"}."""
    app_label, model_name = model.split(".")
    return {f"{app_label}.{action}_{model_name}" for action in actions}


# What each role may change, by "app_label.codename". Viewing is granted separately (VIEW_ALL_APPS).
ROLES: dict[str, frozenset[str]] = {
    OPERATIONS: frozenset(
        {
            *_perms("partners.partner", "add", "change"),
            # Issue, rotate and revoke keys (the admin checks change_partner; these say it in the table).
            *_perms("partners.partnercredential", "add", "change"),
            *_perms("cashback.cashbackrule", "add", "change", "delete"),
            # Upload a partner's purchases CSV and resume it (cashback/batch_admin.py); batches are never edited.
            "cashback.add_batch",
            *_perms("loyalty.tierlevel", "add", "change", "delete"),
            *_perms("loyalty.rewardrule", "add", "change", "delete"),
            *_perms("wallets.wallet", "add", "change"),
            *_perms("wallets.provider", "add", "change"),
            *_perms("wallets.fee", "add", "change", "delete"),
            # Retry, cancel, resolve, release: wallets.admin.PayoutAdmin.has_operate_permission.
            "wallets.change_payout",
            # The customer email's wording, and sending again what failed (DOMAIN.md §6).
            *_perms("wallets.emailtemplate", "add", "change"),
            "wallets.change_emailnotification",
            # Re-send a partner webhook (partners/webhooks_admin.py).
            "partners.change_webhookdelivery",
        }
    ),
    FINANCE: frozenset(
        {
            # Reconciliation evidence and invoices are added and annotated, never deleted.
            *_perms("reports.settlementrun", "add", "change"),
            *_perms("reports.settlementline", "add", "change"),
            *_perms("reports.invoice", "add", "change"),
            "cashback.export_transaction",
            "wallets.export_payout",
        }
    ),
}


def role_permissions(role: str, *, available: Iterable[str]) -> set[str]:
    """The permissions `role` should hold: its own ROLES entry plus viewing every Cezbek model in `available`."""
    views = {
        name
        for name in available
        if name.split(".", 1)[0] in VIEW_ALL_APPS and name.split(".", 1)[1].startswith("view_")
    }
    return set(ROLES[role]) | views


def roles_sync(*, apps=global_apps, using: str = DEFAULT_DB_ALIAS) -> dict[str, list[str]]:
    """Creates the staff groups or brings them up to date: each holds exactly its role's existing permissions.

    Idempotent. Returns, per group, the permissions of ROLES not in the database yet (models or custom
    permissions not migrated so far); they are attached by the next run.
    """
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    existing = {
        f"{app_label}.{codename}": pk
        for pk, app_label, codename in Permission.objects.using(using).values_list(
            "pk", "content_type__app_label", "codename"
        )
    }
    missing: dict[str, list[str]] = {}
    with transaction.atomic(using=using):
        for role in ROLES:
            wanted = role_permissions(role, available=existing)
            group, _ = Group.objects.using(using).get_or_create(name=role)
            group.permissions.set(sorted(existing[name] for name in wanted if name in existing))
            missing[role] = sorted(name for name in wanted if name not in existing)
    return missing
