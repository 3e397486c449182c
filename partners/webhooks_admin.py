"""Admin for partner webhook deliveries (partners/webhooks.py): what was sent, how it went, re-send.

Deliveries and their attempts are written only by the sender: read-only here. Re-sending needs the
change permission on webhook deliveries; it makes the delivery due now with a fresh 24 h window and
a worker sends it (the attempts list shows the result).
"""

from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.urls import reverse
from django.utils.html import format_html

from cashback.admin import ReadOnlyAdmin
from partners.models import WebhookAttempt, WebhookDelivery
from partners.webhooks import webhook_resend


class WebhookAttemptInline(admin.TabularInline):
    """Every POST of the delivery: the answer's status code, the latency, the error."""

    model = WebhookAttempt
    fields = ["number", "created_at", "outcome", "status_code", "latency_ms", "error", "url"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "attempts"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "id", "partner", "event", "kezbek_ref", "state", "attempts", "last_status_code", "last_error",
        "next_attempt_at", "delivered_at", "created_at",
    ]
    list_filter = ["state", "event", "partner"]
    list_select_related = ["partner"]
    search_fields = ["=kezbek_ref", "=payout__id"]
    search_help_text = "A kezbek ref or a payout id, exactly."
    date_hierarchy = "created_at"
    ordering = ["-id"]
    leading_fields = [
        "partner", "payout_link", "event", "kezbek_ref", "state", "attempts", "first_attempt_at", "next_attempt_at",
        "last_status_code", "last_error", "delivered_at", "created_at", "payload",
    ]
    hidden_fields = frozenset({"payout"})
    inlines = [WebhookAttemptInline]
    actions = ["resend"]

    @admin.display(description="payout")
    def payout_link(self, obj: WebhookDelivery) -> str:
        url = reverse("admin:wallets_payout_change", args=[quote(obj.payout_id)])
        return format_html('<a href="{}">{}</a>', url, obj.payout_id)

    def has_resend_permission(self, request) -> bool:
        return request.user.has_perm("partners.change_webhookdelivery")

    @admin.action(description="Re-send the selected webhooks", permissions=["resend"])
    def resend(self, request, queryset):
        deliveries = list(queryset.order_by("id"))
        for delivery in deliveries:
            webhook_resend(delivery=delivery)
            self.log_change(request, delivery, "Re-sent")
        self.message_user(
            request,
            f"{len(deliveries)} webhook(s) queued to be sent again now, with a fresh 24 h of retries; "
            "their attempts show how it went.",
            messages.SUCCESS,
        )
