"""Admin for wallets, providers, their fees (operations) and payouts (DOMAIN.md §5).

Payouts are read-only here: money and history are never edited. Operators with change permission
on payouts act on them only through wallets.services (retry, cancel, resolve), each of which
writes a PayoutEvent naming the operator; that event is the audit trail shown on the payout page.
"""

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.db.models import DecimalField, ExpressionWrapper, F
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from cashback.admin import (
    ArchivedFilter,
    ArchivedReadOnlyMixin,
    BooksSearchMixin,
    LargeBooksMixin,
    LiveRowForm,
    ReadOnlyAdmin,
)
from cezbek.errors import CezbekError
from cezbek.exports import DATETIME, LIST, MONEY, CsvExportMixin, ExportColumn
from wallets.models import Fee, Payout, PayoutAttempt, PayoutEvent, Provider, Wallet
from wallets.services import payout_cancel, payout_release, payout_resolve_manually, payout_retry


@admin.register(Wallet)
class WalletAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "active"]
    list_filter = ["active"]
    search_fields = ["code", "name"]
    ordering = ["code"]


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "kind", "priority", "active"]
    list_filter = ["kind", "active"]
    search_fields = ["code", "name"]
    ordering = ["priority", "code"]


@admin.register(Fee)
class FeeAdmin(ArchivedReadOnlyMixin, admin.ModelAdmin):
    form = LiveRowForm
    list_display = ["provider", "wallet", "flat_fee", "percent_fee", "active"]
    list_filter = ["active", "provider", "wallet", ArchivedFilter]
    list_select_related = ["provider", "wallet"]
    search_fields = ["provider__code", "wallet__code"]
    ordering = ["wallet__code", "provider__priority", "provider__code"]
    readonly_fields = ["archived"]
    fieldsets = [
        (
            None,
            {
                "fields": ["provider", "wallet", ("flat_fee", "percent_fee"), "active", "archived"],
                "description": (
                    "Fee for one payout on this route = flat fee + percent fee × amount / 100, rounded "
                    "half-up to the cent. A payout takes the cheapest active route for its wallet whose "
                    "provider is active; ties go to the lower provider priority, then the code."
                ),
            },
        )
    ]


# --- payouts ------------------------------------------------------------------------------------


def _reason(error: CezbekError) -> str:
    """The service's own words, without the field prefix meant for API clients."""
    field_messages = [m for ms in error.fields.values() for m in ms]
    return " ".join(field_messages) or error.message


class PayoutAgeFilter(admin.SimpleListFilter):
    """How long ago the payout was created: what is fresh, what is late, what is stuck."""

    title = "age"
    parameter_name = "age"
    # (value, label, younger than, at least as old as)
    BANDS = [
        ("lt5m", "< 5 min", timedelta(minutes=5), None),
        ("5m-1h", "5–60 min", timedelta(hours=1), timedelta(minutes=5)),
        ("1h-24h", "1–24 h", timedelta(hours=24), timedelta(hours=1)),
        ("gt24h", "> 24 h", None, timedelta(hours=24)),
    ]

    def lookups(self, request, model_admin):
        return [(value, label) for value, label, _, _ in self.BANDS]

    def queryset(self, request, queryset):
        band = next((b for b in self.BANDS if b[0] == self.value()), None)
        if band is None:
            return queryset
        _, _, younger_than, older_than = band
        now = timezone.now()
        if younger_than is not None:
            queryset = queryset.filter(created_at__gt=now - younger_than)
        if older_than is not None:
            queryset = queryset.filter(created_at__lte=now - older_than)
        return queryset


class PayoutAttemptInline(admin.TabularInline):
    """Every conversation with a provider about this payout: sends, inquiries, callbacks."""

    model = PayoutAttempt
    fields = ["created_at", "provider", "kind", "reference", "outcome", "http_status", "latency_ms", "provider_ref", "message"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "attempts (conversations with providers)"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("provider")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class PayoutEventInline(admin.TabularInline):
    """The payout's history, oldest first: written by the services, never edited. The audit trail:
    every operator action names its actor."""

    model = PayoutEvent
    fields = ["created_at", "from_status", "to_status", "actor", "note"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "history (who changed what, and when)"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("actor")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class CancelForm(forms.Form):
    note = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Optional: why. It is kept in each payout's history with your name.",
    )


class ResolveForm(forms.Form):
    CREDITED, NOT_CREDITED = "credited", "not_credited"

    outcome = forms.ChoiceField(
        choices=[
            (CREDITED, "Credited: the customer received the money (SUCCEEDED)"),
            (NOT_CREDITED, "Not credited: the money never arrived (FAILED)"),
        ],
        widget=forms.RadioSelect,
    )
    note = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        error_messages={"required": "Say what you found: a note is required."},
        help_text="What you found and where (e.g. the provider's statement). Kept in the history with your name.",
    )


STATUS_COLOURS = {
    Payout.Status.PENDING: "#6c757d",
    Payout.Status.HELD: "#b8860b",
    Payout.Status.SENDING: "#1f6feb",
    Payout.Status.AWAITING_CALLBACK: "#6f42c1",
    Payout.Status.UNKNOWN: "#d9480f",
    Payout.Status.SUCCEEDED: "#2b8a3e",
    Payout.Status.FAILED: "#c92a2a",
    Payout.Status.MANUAL_REVIEW: "#e8590c",
    Payout.Status.CANCELLED: "#495057",
}


@admin.register(Payout)
class PayoutAdmin(CsvExportMixin, LargeBooksMixin, BooksSearchMixin, ReadOnlyAdmin):
    """Read-only fields; operators act through the retry / cancel / resolve services, audited.

    Acting needs the change permission on payouts (`has_operate_permission`); the change form itself
    stays read-only for everyone (`ReadOnlyAdmin.has_change_permission` is False), so the money and the
    history can never be posted over.
    """

    list_display = [
        "id",
        "kezbek_ref",
        "msisdn",
        "wallet",
        "amount",
        "status_badge",
        "provider",
        "fee",
        "saving",
        "checks",
        "flag_list",
        "age",
        "created_at",
    ]
    list_filter = ["status", "provider", "wallet", PayoutAgeFilter]
    list_select_related = ["transaction", "wallet", "provider"]
    search_fields = ["msisdn", "transaction__kezbek_ref", "transaction__partner_ref", "transaction__partner__code"]
    transaction_path = "transaction__"  # BooksSearchMixin
    match_transactions_by_id = True
    date_hierarchy = "created_at"
    ordering = ["-id"]
    raw_id_fields = ["transaction"]  # millions of them: never a <select>
    leading_fields = ["transaction", "kezbek_ref", "msisdn", "wallet", "amount", "status", "flag_list", "provider"]
    hidden_fields = frozenset({"flags"})  # shown as flag_list
    inlines = [PayoutAttemptInline, PayoutEventInline]
    actions = ["release_payouts", "retry_payouts", "cancel_payouts"]

    @admin.display(description="kezbek ref", ordering="transaction__kezbek_ref")
    def kezbek_ref(self, obj: Payout) -> str:
        return obj.transaction.kezbek_ref

    export_columns = [
        ExportColumn("payout_id", "id"),
        ExportColumn("kezbek_ref", "transaction__kezbek_ref"),
        ExportColumn("partner", "transaction__partner__code"),
        ExportColumn("msisdn", "msisdn"),
        ExportColumn("wallet", "wallet__code"),
        ExportColumn("amount", "amount", MONEY),
        ExportColumn("status", "status"),
        ExportColumn("provider", "provider__code"),
        ExportColumn("reference", "reference"),
        ExportColumn("provider_ref", "provider_ref"),
        ExportColumn("fee", "fee", MONEY),
        ExportColumn("dearest_fee", "dearest_fee", MONEY),
        ExportColumn(
            "saving", ExpressionWrapper(F("dearest_fee") - F("fee"), output_field=DecimalField(max_digits=14, decimal_places=2)), MONEY
        ),
        ExportColumn("flags", "flags", LIST),
        ExportColumn("checks", "checks"),
        ExportColumn("created_at", "created_at", DATETIME),
        ExportColumn("updated_at", "updated_at", DATETIME),
    ]

    @admin.display(description="saving")
    def saving(self, obj: Payout):
        """What the chosen route saves against the dearest candidate (DOMAIN.md §4)."""
        if obj.fee is None or obj.dearest_fee is None:
            return None
        return obj.dearest_fee - obj.fee

    @admin.display(description="flags")
    def flag_list(self, obj: Payout) -> str:
        return ", ".join(obj.flags) if obj.flags else "—"

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Payout) -> str:
        return format_html(
            '<span style="background:{};color:#fff;padding:1px 6px;border-radius:8px;white-space:nowrap">{}</span>',
            STATUS_COLOURS.get(obj.status, "#6c757d"),
            obj.status,
        )

    @admin.display(description="age", ordering="-created_at")
    def age(self, obj: Payout) -> str:
        seconds = max(0, int((timezone.now() - obj.created_at).total_seconds()))
        for unit, size in [("d", 86400), ("h", 3600), ("min", 60)]:
            if seconds >= size:
                return f"{seconds // size} {unit}"
        return f"{seconds} s"

    # --- who may act ----------------------------------------------------------------------------

    def has_operate_permission(self, request, obj=None) -> bool:
        """Retry, cancel and resolve: for staff with the model's change permission."""
        return admin.ModelAdmin.has_change_permission(self, request, obj)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["can_resolve"] = (
            obj is not None and obj.status == Payout.Status.MANUAL_REVIEW and self.has_operate_permission(request, obj)
        )
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    # --- actions --------------------------------------------------------------------------------

    def _back_to_delivery(self, request, queryset, *, service, done_word: str, not_word: str, transition: str) -> None:
        """Runs `service` on each selected payout by its own rules; says which moved and why the others did not."""
        done = []
        for payout in queryset.order_by("pk"):
            try:
                service(payout=payout, actor=request.user)
            except CezbekError as error:
                self.message_user(request, f"Payout {payout.pk} not {not_word}: {_reason(error)}", messages.ERROR)
                continue
            self.log_change(request, payout, f"{done_word} ({transition})")
            done.append(payout)
        if done:
            self.message_user(
                request,
                f"{done_word} {len(done)} payout(s): {', '.join(str(p.pk) for p in done)}; queued for delivery.",
                messages.SUCCESS,
            )

    @admin.action(description="Release selected HELD payouts (velocity) for delivery", permissions=["operate"])
    def release_payouts(self, request, queryset):
        """HELD → PENDING (DOMAIN.md §8), queued for delivery; anything else is refused with the reason."""
        self._back_to_delivery(
            request, queryset, service=payout_release, done_word="Released", not_word="released", transition="HELD → PENDING"
        )

    @admin.action(description="Retry selected FAILED payouts", permissions=["operate"])
    def retry_payouts(self, request, queryset):
        """FAILED → PENDING, every route tried afresh; anything else is refused with the reason."""
        self._back_to_delivery(
            request, queryset, service=payout_retry, done_word="Retried", not_word="retried", transition="FAILED → PENDING"
        )

    @admin.action(description="Cancel selected payouts not yet sent…", permissions=["operate"])
    def cancel_payouts(self, request, queryset):
        """PENDING/HELD → CANCELLED after a confirmation page with an optional note."""
        payouts = list(queryset.select_related("transaction", "wallet").order_by("pk"))
        form = CancelForm(request.POST if request.POST.get("post") == "yes" else None)
        if not form.is_valid():
            context = {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": "Cancel payouts?",
                "payouts": payouts,
                "form": form,
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
            }
            return TemplateResponse(request, "admin/wallets/payout/cancel_confirmation.html", context)
        note = form.cleaned_data["note"].strip()
        done = []
        for payout in payouts:
            try:
                payout_cancel(payout=payout, actor=request.user, note=note)
            except CezbekError as error:
                self.message_user(request, f"Payout {payout.pk} not cancelled: {_reason(error)}", messages.ERROR)
                continue
            self.log_change(request, payout, f"Cancelled: {note}" if note else "Cancelled")
            done.append(payout)
        if done:
            self.message_user(
                request, f"Cancelled {len(done)} payout(s): {', '.join(str(p.pk) for p in done)}.", messages.SUCCESS
            )
        return None

    # --- resolving MANUAL_REVIEW -----------------------------------------------------------------

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/resolve/",
                self.admin_site.admin_view(self.resolve_view),
                name="%s_%s_resolve" % info,
            ),
            *super().get_urls(),
        ]

    def resolve_view(self, request, object_id):
        """MANUAL_REVIEW → SUCCEEDED or FAILED, with the operator's required note."""
        if not self.has_operate_permission(request):
            raise PermissionDenied
        payout = get_object_or_404(Payout.objects.select_related("transaction", "wallet", "provider"), pk=unquote(object_id))
        change_url = reverse("admin:wallets_payout_change", args=[quote(payout.pk)])
        if payout.status != Payout.Status.MANUAL_REVIEW:
            self.message_user(
                request,
                f"Only a payout in MANUAL_REVIEW can be resolved; payout {payout.pk} is {payout.status}.",
                messages.ERROR,
            )
            return HttpResponseRedirect(change_url)
        form = ResolveForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            succeeded = form.cleaned_data["outcome"] == ResolveForm.CREDITED
            try:
                payout_resolve_manually(payout=payout, actor=request.user, succeeded=succeeded, note=form.cleaned_data["note"])
            except CezbekError as error:
                if "note" in error.fields:
                    form.add_error("note", _reason(error))
                else:
                    self.message_user(request, f"Payout {payout.pk} not resolved: {_reason(error)}", messages.ERROR)
                    return HttpResponseRedirect(change_url)
            else:
                self.log_change(request, payout, f"Resolved from MANUAL_REVIEW to {payout.status}")
                self.message_user(request, f"Payout {payout.pk} resolved: {payout.status}.", messages.SUCCESS)
                return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Resolve payout {payout.pk}",
            "payout": payout,
            "form": form,
            "attempts": payout.attempt_rows.select_related("provider").order_by("id"),
        }
        return TemplateResponse(request, "admin/wallets/payout/resolve.html", context)


@admin.register(PayoutAttempt)
class PayoutAttemptAdmin(LargeBooksMixin, ReadOnlyAdmin):
    """For support: find a provider's conversation by our reference or theirs."""

    list_display = ["id", "payout", "provider", "kind", "reference", "outcome", "http_status", "latency_ms", "provider_ref", "created_at"]
    list_filter = ["provider", "kind", "outcome"]
    list_select_related = ["payout", "provider"]
    search_fields = ["reference", "provider_ref"]
    ordering = ["-id"]
    raw_id_fields = ["payout"]
    leading_fields = ["payout", "provider", "kind", "reference", "outcome", "http_status", "latency_ms", "provider_ref", "message"]


from wallets import notifications_admin  # noqa: E402,F401  (customer emails: wallets/notifications_admin.py)
