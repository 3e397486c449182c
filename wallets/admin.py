"""Admin for wallets, providers, their fees (operations) and payouts (read-only for now)."""

from django.contrib import admin

from cashback.admin import ArchivedFilter, ArchivedReadOnlyMixin, LiveRowForm, MsisdnSearchMixin, ReadOnlyAdmin
from wallets.models import Fee, Payout, PayoutEvent, Provider, Wallet


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


class PayoutEventInline(admin.TabularInline):
    """The payout's history, oldest first: written by the services, never edited."""

    model = PayoutEvent
    fields = ["created_at", "from_status", "to_status", "note", "actor"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("actor")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Payout)
class PayoutAdmin(MsisdnSearchMixin, ReadOnlyAdmin):
    """Read-only for now: every state change goes through wallets.services, with its history row."""

    list_display = [
        "id",
        "kezbek_ref",
        "msisdn",
        "wallet",
        "amount",
        "status",
        "provider",
        "flag_list",
        "created_at",
    ]
    list_filter = ["status", "wallet", "provider"]
    list_select_related = ["transaction", "wallet", "provider"]
    search_fields = ["msisdn", "transaction__kezbek_ref"]
    date_hierarchy = "created_at"
    ordering = ["-id"]
    show_full_result_count = False
    leading_fields = ["transaction", "kezbek_ref", "msisdn", "wallet", "amount", "status", "flag_list", "provider"]
    hidden_fields = frozenset({"flags"})  # shown as flag_list
    inlines = [PayoutEventInline]

    @admin.display(description="kezbek ref", ordering="transaction__kezbek_ref")
    def kezbek_ref(self, obj: Payout) -> str:
        return obj.transaction.kezbek_ref

    @admin.display(description="flags")
    def flag_list(self, obj: Payout) -> str:
        return ", ".join(obj.flags) if obj.flags else "—"
