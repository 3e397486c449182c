"""Admin for cashback rules (operations) and the transaction books (read-only).

The small helpers below (archived rows, live-row uniqueness, MSISDN search, exact search of the books,
bounded counts for large tables, read-only books) are shared with the wallets and loyalty admins; they live here because this module imports no other
app's admin, so there is no import cycle.
"""

import re
from datetime import date, datetime, timedelta
from functools import partial

from django import forms
from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Max, Min, Q, UniqueConstraint
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.text import smart_split, unescape_string_literal

from cashback.models import CashbackRule, Transaction
from cashback.validation import normalize_msisdn
from cezbek.exports import DATETIME, MONEY, CsvExportMixin, ExportColumn
from partners.models import Partner
from wallets.models import Payout


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


KEZBEK_REF = re.compile(r"KZ[A-Z2-7]{24}")  # cashback.services.kezbek_ref_new


def _unquote(term: str) -> str:
    """`"INV 001"` searches for the partner ref with the space, as in Django's own search."""
    if len(term) > 1 and term[0] in "\"'" and term[-1] == term[0]:
        return unescape_string_literal(term)
    return term


class BooksSearchMixin:
    """Search the books by what staff have in hand, matched exactly on indexed columns.

    Each term is a partner code (the partner's rows), or else any of: a kezbek ref (or a provider's
    client reference `<kezbek ref>-<PROVIDER>`), a partner ref, an MSISDN as customers say it
    (`0811…`, `+62811…`). Several terms narrow the list. No substring search: over millions of rows
    a `LIKE '%…%'` reads the whole table, and refs and numbers are copied, not remembered.
    """

    search_help_text = (
        "Exact kezbek ref (or provider reference KZ…-CODE), partner ref, MSISDN (0811…, +62811… or 62811…) "
        "or partner code; several terms narrow the list."
    )
    # Where the purchase's fields are, seen from the admin's model.
    transaction_path = ""
    # True when the model is not Transaction: ref matches are looked up first and applied by id, so
    # that both sides of the OR use an index (an OR across a join reads every row).
    match_transactions_by_id = False

    def get_search_results(self, request, queryset, search_term):
        terms = [_unquote(term).strip() for term in smart_split(search_term)]
        terms = [term for term in terms if term]
        if not terms:
            return queryset, False
        partners = dict(Partner.objects.values_list("code", "pk"))  # a handful of rows
        for term in terms:
            if (code := term.upper()) in partners:
                queryset = queryset.filter(**{f"{self.transaction_path}partner_id": partners[code]})
                continue
            # The unique (partner, partner_ref) index serves partner_ref only with the partner given.
            refs = Q(partner_ref=term, partner_id__in=sorted(partners.values()))
            if KEZBEK_REF.fullmatch(kezbek_ref := code.split("-", 1)[0]):
                refs |= Q(kezbek_ref=kezbek_ref)
            if self.match_transactions_by_id:
                match = Q(transaction_id__in=list(Transaction.objects.filter(refs).values_list("pk", flat=True)))
            else:
                match = refs
            try:
                match |= Q(msisdn=normalize_msisdn(term))
            except ValueError:
                pass
            queryset = queryset.filter(match)
        return queryset, False


class CappedCountPaginator(Paginator):
    """Counts at most `cap` rows (`SELECT count(*) FROM (… LIMIT cap + 1)`): over millions of rows an
    exact count costs more than the page itself. Past the cap the pages stop there and the changelist
    says so (cezbek/templates/admin/cezbek/export_change_list.html); the CSV export has every row."""

    cap = 10_000

    @cached_property
    def _counted(self) -> int:
        return self.object_list[: self.cap + 1].count()

    @property
    def count(self) -> int:
        return min(self._counted, self.cap)

    @property
    def capped(self) -> bool:
        return self._counted > self.cap


def datetimes_between_bounds(queryset, field_name: str, kind: str, order: str = "ASC", tzinfo=None) -> list[datetime]:
    """`queryset.datetimes(field_name, kind)` from the first and last row only (two index lookups):
    every year, month or day between them, in the current time zone, whether or not it has rows."""
    bounds = queryset.aggregate(first=Min(field_name), last=Max(field_name))
    if bounds["first"] is None:
        return []
    zone = tzinfo or timezone.get_current_timezone()
    first, last = bounds["first"].astimezone(zone), bounds["last"].astimezone(zone)
    day = date(first.year, 1 if kind == "year" else first.month, 1 if kind in ("year", "month") else first.day)
    periods = []
    while day <= last.date():
        periods.append(datetime(day.year, day.month, day.day, tzinfo=zone))
        if kind == "year":
            day = date(day.year + 1, 1, 1)
        elif kind == "month":
            day = date(day.year + day.month // 12, day.month % 12 + 1, 1)
        else:
            day += timedelta(days=1)
    return periods if order == "ASC" else periods[::-1]


class LargeBooksChangeList(ChangeList):
    """Past the count cap, the date hierarchy offers every period between the first and the last row
    instead of `SELECT DISTINCT date_trunc(…)` over all of them (a full scan: 1.5 s on a million
    transactions, docs/benchmarks.md). Under the cap (10,000 rows at most) it stays exact."""

    def get_results(self, request):
        super().get_results(request)
        if self.paginator.capped:
            self.queryset = self.queryset.all()
            self.queryset.datetimes = partial(datetimes_between_bounds, self.queryset)


class LargeBooksMixin:
    """Changelists over tables that grow by the million: bounded counts, no facet counts, a date
    hierarchy that does not read every row."""

    paginator = CappedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER

    def get_changelist(self, request, **kwargs):
        return LargeBooksChangeList


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


class PayoutStatusFilter(admin.SimpleListFilter):
    """Where the purchase's payout stands; NONE for purchases that earned nothing (total 0)."""

    title = "payout status"
    parameter_name = "payout_status"
    NONE = "NONE"

    def lookups(self, request, model_admin):
        return [*((status, status) for status in Payout.Status.values), (self.NONE, "No payout (total 0)")]

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        if value == self.NONE:
            return queryset.filter(payout__isnull=True)
        if value in Payout.Status.values:
            return queryset.filter(payout__status=value)
        raise IncorrectLookupParameters(f"Unknown payout status {value!r}.")


@admin.register(Transaction)
class TransactionAdmin(CsvExportMixin, LargeBooksMixin, BooksSearchMixin, ReadOnlyAdmin):
    """The books: what partners posted and what Cezbek computed. Nothing here may be edited."""

    list_display = [
        "kezbek_ref",
        "partner_ref",
        "partner_code",
        "msisdn",
        "wallet",
        "amount",
        "cashback",
        "reward",
        "total",
        "tier",
        "payout_status",
        "created_at",
    ]
    list_filter = ["partner", "wallet", PayoutStatusFilter]
    list_select_related = ["partner", "wallet", "tier", "payout"]
    search_fields = ["kezbek_ref", "partner_ref", "msisdn", "partner__code"]  # see BooksSearchMixin
    date_hierarchy = "created_at"
    ordering = ["-id"]
    leading_fields = [
        "kezbek_ref", "partner", "partner_ref", "created_at", "msisdn", "email", "wallet", "quantity", "amount",
        "rule", "cashback", "reward", "total", "tier", "tier_count", "tier_expires_at", "payout_status",
    ]
    export_columns = [
        ExportColumn("kezbek_ref", "kezbek_ref"),
        ExportColumn("partner", "partner__code"),
        ExportColumn("partner_ref", "partner_ref"),
        ExportColumn("created_at", "created_at", DATETIME),
        ExportColumn("msisdn", "msisdn"),
        ExportColumn("wallet", "wallet__code"),
        ExportColumn("quantity", "quantity"),
        ExportColumn("amount", "amount", MONEY),
        ExportColumn("rule", "rule__name"),
        ExportColumn("cashback", "cashback", MONEY),
        ExportColumn("reward", "reward", MONEY),
        ExportColumn("total", "total", MONEY),
        ExportColumn("tier", "tier__name"),
        ExportColumn("payout_id", "payout__id"),
        ExportColumn("payout_status", "payout__status"),
    ]

    @admin.display(description="partner", ordering="partner__code")
    def partner_code(self, obj: Transaction) -> str:
        return obj.partner.code

    @admin.display(description="payout")
    def payout_status(self, obj: Transaction) -> str:
        payout = getattr(obj, "payout", None)  # reverse one-to-one: absent when the total was 0
        return payout.status if payout is not None else "—"


from cashback import batch_admin  # noqa: F401,E402
