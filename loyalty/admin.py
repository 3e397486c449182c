"""Admin for the loyalty ladder (operations) and customers' standing (read-only)."""

from datetime import timedelta

from django.contrib import admin
from django.core.exceptions import ValidationError
from django.forms.models import BaseInlineFormSet
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from cashback.admin import ArchivedFilter, ArchivedReadOnlyMixin, LiveRowForm, MsisdnSearchMixin, ReadOnlyAdmin
from loyalty.models import JourneyEntry, LoyaltyState, RewardRule, TierLevel

JOURNEY_INLINE_LIMIT = 50


class RewardRuleFormSet(BaseInlineFormSet):
    def clean(self):
        super().clean()
        seen = set()
        for form in self.forms:
            nth = form.cleaned_data.get("nth") if hasattr(form, "cleaned_data") else None
            if nth is None or form.cleaned_data.get("DELETE"):
                continue
            if nth in seen:
                raise ValidationError(f"Two rewards for purchase #{nth}: keep one.")
            seen.add(nth)


class RewardRuleInline(admin.TabularInline):
    """The tier's live rewards; archived ones stay in the database as history."""

    model = RewardRule
    form = LiveRowForm
    formset = RewardRuleFormSet
    fields = ["nth", "reward"]
    extra = 0

    def get_queryset(self, request):
        return super().get_queryset(request).filter(archived=False)

    # `obj` is the tier: an archived tier's rewards are history too.
    def has_add_permission(self, request, obj=None):
        return not (obj and obj.archived) and super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        return not (obj and obj.archived) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return not (obj and obj.archived) and super().has_delete_permission(request, obj)


@admin.register(TierLevel)
class TierLevelAdmin(ArchivedReadOnlyMixin, admin.ModelAdmin):
    form = LiveRowForm
    list_display = ["name", "rank", "promote_after", "validity_days", "reward_list"]
    list_filter = [ArchivedFilter]
    search_fields = ["name"]
    ordering = ["rank"]
    readonly_fields = ["archived"]
    fieldsets = [
        (
            None,
            {
                "fields": ["name", "rank", "promote_after", "validity_days", "archived"],
                "description": (
                    "Customers start on rank 1. After 'promote after' purchases in a tier they move up one "
                    "rank; when a tier's validity runs out they drop one rank. Rewards below are paid for "
                    "the nth purchase within this tier."
                ),
            },
        )
    ]
    inlines = [RewardRuleInline]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("rewards")

    @admin.display(description="rewards (nth: amount)")
    def reward_list(self, obj: TierLevel) -> str:
        rewards = [r for r in obj.rewards.all() if not r.archived]
        return ", ".join(f"{r.nth}: {r.reward}" for r in rewards) or "—"


@admin.register(RewardRule)
class RewardRuleAdmin(ArchivedReadOnlyMixin, admin.ModelAdmin):
    """Every reward of the ladder in one list; usually edited on its tier's page."""

    form = LiveRowForm
    list_display = ["tier", "nth", "reward"]
    list_filter = ["tier", ArchivedFilter]
    list_select_related = ["tier"]
    search_fields = ["tier__name"]
    ordering = ["tier__rank", "nth"]
    readonly_fields = ["archived"]
    fields = ["tier", "nth", "reward", "archived"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "tier":
            kwargs["queryset"] = TierLevel.objects.filter(archived=False)  # an archived tier takes no new rewards
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class ExpiryFilter(admin.SimpleListFilter):
    """Who is about to drop a tier, and whose drop the daily job has not written yet."""

    title = "expiry"
    parameter_name = "expiry"

    def lookups(self, request, model_admin):
        return [
            ("expired", "Expired, not yet applied"),
            ("7d", "Within 7 days"),
            ("30d", "Within 30 days"),
            ("never", "Never"),
        ]

    def queryset(self, request, queryset):
        now = timezone.now()
        match self.value():
            case "expired":
                return queryset.filter(expires_at__lte=now)
            case "7d":
                return queryset.filter(expires_at__gt=now, expires_at__lte=now + timedelta(days=7))
            case "30d":
                return queryset.filter(expires_at__gt=now, expires_at__lte=now + timedelta(days=30))
            case "never":
                return queryset.filter(expires_at__isnull=True)
        return queryset


class NewestJourneyFormSet(BaseInlineFormSet):
    """Only the newest entries: a loyal customer's full journey would make the page unusable."""

    def get_queryset(self):
        if not hasattr(self, "_limited_queryset"):
            self._limited_queryset = super().get_queryset()[:JOURNEY_INLINE_LIMIT]
        return self._limited_queryset


class JourneyEntryInline(admin.TabularInline):
    model = JourneyEntry
    formset = NewestJourneyFormSet
    fields = ["created_at", "reason", "tier_before", "tier_after", "count", "reward", "expires_at", "transaction"]
    readonly_fields = fields
    ordering = ["-id"]
    extra = 0
    can_delete = False
    verbose_name_plural = f"journey (newest {JOURNEY_INLINE_LIMIT})"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("tier_before", "tier_after", "transaction")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(LoyaltyState)
class LoyaltyStateAdmin(MsisdnSearchMixin, ReadOnlyAdmin):
    """Changed only by the loyalty services, under a row lock."""

    list_display = ["msisdn", "partner", "tier", "count", "entered_at", "expires_at", "updated_at"]
    list_filter = ["partner", "tier", ExpiryFilter]
    list_select_related = ["partner", "tier"]
    search_fields = ["msisdn", "=partner__code"]
    search_help_text = "MSISDN as the customer says it (0811…, +62811…) or part of it, or a partner code."
    date_hierarchy = "updated_at"
    ordering = ["-updated_at"]
    show_full_result_count = False
    leading_fields = ["partner", "msisdn", "tier", "count", "entered_at", "expires_at", "updated_at", "full_journey"]
    inlines = [JourneyEntryInline]

    @admin.display(description="full journey")
    def full_journey(self, obj: LoyaltyState) -> str:
        url = reverse("admin:loyalty_journeyentry_changelist") + f"?state__id__exact={obj.pk}"
        return format_html('<a href="{}">All journey entries</a>', url)


@admin.register(JourneyEntry)
class JourneyEntryAdmin(MsisdnSearchMixin, ReadOnlyAdmin):
    list_display = [
        "id", "msisdn", "partner", "reason", "tier_before", "tier_after",
        "count", "reward", "transaction", "created_at",
    ]
    list_filter = ["reason", "tier_after", "state__partner"]
    list_select_related = ["state__partner", "tier_before", "tier_after", "transaction"]
    search_fields = ["state__msisdn", "=transaction__kezbek_ref", "=transaction__partner_ref"]
    search_help_text = "MSISDN (0811…, +62811…), or an exact kezbek ref or partner ref."
    msisdn_search_field = "state__msisdn"
    date_hierarchy = "created_at"
    ordering = ["-id"]
    show_full_result_count = False
    leading_fields = ["state", "transaction", "reason", "tier_before", "tier_after", "count", "reward"]

    @admin.display(description="msisdn", ordering="state__msisdn")
    def msisdn(self, obj: JourneyEntry) -> str:
        return obj.state.msisdn

    @admin.display(description="partner", ordering="state__partner__code")
    def partner(self, obj: JourneyEntry) -> str:
        return obj.state.partner.code
