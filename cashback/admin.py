"""Admin for cashback rules (operations) and the transaction books (read-only).

The small helpers below (archived rows, live-row uniqueness, MSISDN search, read-only books) are
shared with the wallets and loyalty admins; they live here because this module imports no other
app's admin, so there is no import cycle.
"""

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import UniqueConstraint
from django.utils import timezone

from cashback.models import CashbackRule, Transaction
from cashback.validation import normalize_msisdn


class ArchivedFilter(admin.SimpleListFilter):
    """Archived rows are history: hidden from the changelist unless asked for ("Archived: yes")."""

    title = "archived"
    parameter_name = "archived"

    def lookups(self, request, model_admin):
        return [("no", "No"), ("yes", "Yes")]

    def value(self):
        return super().value() or "no"

    def choices(self, changelist):
        # No "All" choice: live and archived rows side by side read as one configuration.
        facet_counts = self.get_facet_queryset(changelist) if changelist.add_facets else {}
        for i, (lookup, title) in enumerate(self.lookup_choices):
            if (count := facet_counts.get(f"{i}__c", -1)) != -1:
                title = f"{title} ({count})"
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request, queryset):
        return queryset.filter(archived=self.value() == "yes")


class ArchivedReadOnlyMixin:
    """An archived row keeps the configuration history: it can be viewed, never changed or deleted."""

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.archived:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.archived:
            return False
        return super().has_delete_permission(request, obj)


class LiveRowForm(forms.ModelForm):
    """Checks the "unique among live rows" constraints as form errors, not database errors.

    Django skips a constraint that mentions a field outside the form, and `archived` never is in one.
    """

    def validate_unique(self):
        super().validate_unique()
        exclude = self._get_validation_exclusions() - {"archived"}
        opts = self.instance._meta
        for constraint in opts.constraints:
            if not (isinstance(constraint, UniqueConstraint) and constraint.condition is not None):
                continue
            try:
                constraint.validate(type(self.instance), self.instance, exclude=exclude)
            except ValidationError:
                names = " and ".join(str(opts.get_field(f).verbose_name) for f in constraint.fields)
                self.add_error(None, f"Another live {opts.verbose_name} already has this {names}.")


class MsisdnSearchMixin:
    """Staff type numbers as customers say them (`0811…`, `+62811…`); rows store `62811…`."""

    msisdn_search_field = "msisdn"

    def get_search_results(self, request, queryset, search_term):
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        try:
            msisdn = normalize_msisdn(search_term)
        except ValueError:
            return results, may_have_duplicates
        if msisdn != search_term.strip():
            results = results | queryset.filter(**{self.msisdn_search_field: msisdn})
        return results, may_have_duplicates


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by Cezbek's services: viewable, never added, changed or deleted here.

    The page shows `leading_fields` first, then every other column of the model, so a column added
    later shows up without touching the admin; `hidden_fields` are left out (shown another way).
    """

    leading_fields: list[str] = []
    hidden_fields: frozenset[str] = frozenset()

    def get_fields(self, request, obj=None):
        rest = [
            f.name
            for f in self.model._meta.concrete_fields
            if not f.primary_key and f.name not in self.leading_fields and f.name not in self.hidden_fields
        ]
        return [*self.leading_fields, *rest]

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(CashbackRule)
class CashbackRuleAdmin(ArchivedReadOnlyMixin, admin.ModelAdmin):
    list_display = [
        "name",
        "partner",
        "percentage",
        "max_cashback",
        "min_quantity",
        "max_quantity",
        "min_amount",
        "max_amount",
        "valid_from",
        "valid_until",
        "active",
    ]
    list_display_links = ["name"]
    list_filter = ["active", "partner", ArchivedFilter]
    list_select_related = ["partner"]
    search_fields = ["name", "partner__code", "partner__name"]
    autocomplete_fields = ["partner"]
    ordering = ["-active", "partner__code", "-percentage", "id"]
    readonly_fields = ["archived", "created_at"]
    fieldsets = [
        (
            None,
            {
                "fields": ["name", "partner", "active"],
                "description": (
                    "A rule matches a purchase when it is active, the purchase time is inside its validity "
                    "and both quantity and amount lie inside its ranges (bounds inclusive; an empty maximum "
                    "is unbounded). When several match, a partner's own rule beats a global one, then the "
                    "higher percentage wins, then the older rule."
                ),
            },
        ),
        (
            "Cashback",
            {
                "fields": ["percentage", "max_cashback"],
                "description": (
                    "Cashback = amount × percentage / 100, rounded half-up to the cent, then capped by the "
                    "maximum cashback (empty = no cap)."
                ),
            },
        ),
        ("Ranges", {"fields": [("min_quantity", "max_quantity"), ("min_amount", "max_amount")]}),
        ("Validity", {"fields": ["valid_from", "valid_until"], "description": "Empty 'valid until' = open-ended."}),
        ("History", {"fields": ["archived", "created_at"], "classes": ["collapse"]}),
    ]

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        initial.setdefault("valid_from", timezone.now())
        return initial


@admin.register(Transaction)
class TransactionAdmin(MsisdnSearchMixin, ReadOnlyAdmin):
    """The books: what partners posted and what Cezbek computed. Nothing here may be edited."""

    list_display = [
        "kezbek_ref",
        "partner",
        "partner_ref",
        "msisdn",
        "wallet",
        "quantity",
        "amount",
        "cashback",
        "reward",
        "total",
        "tier",
        "payout_status",
        "created_at",
    ]
    list_filter = ["partner", "wallet"]
    list_select_related = ["partner", "wallet", "tier", "payout"]
    search_fields = ["kezbek_ref", "partner_ref", "msisdn"]
    date_hierarchy = "created_at"
    ordering = ["-id"]
    show_full_result_count = False
    leading_fields = [
        "kezbek_ref", "partner", "partner_ref", "created_at", "msisdn", "email", "wallet", "quantity", "amount",
        "rule", "cashback", "reward", "total", "tier", "tier_count", "tier_expires_at", "payout_status",
    ]

    @admin.display(description="payout")
    def payout_status(self, obj: Transaction) -> str:
        payout = getattr(obj, "payout", None)  # reverse one-to-one: absent when the total was 0
        return payout.status if payout is not None else "—"
