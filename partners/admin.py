"""Admin for partners and their API credentials (API.md "Authentication").

A secret exists in clear only in the response right after it is issued: it is never put in a
message, the session, a log line or the admin history, and that response is never cached.
"""

from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html
from django.views.decorators.debug import sensitive_variables

from partners.models import Partner, PartnerCredential
from partners.services import IssuedCredential, credential_issue, credential_revoke


class PartnerCredentialInline(admin.TabularInline):
    """What staff may see of a key: its prefix and dates, never the key id or the secret."""

    model = PartnerCredential
    fields = ["key", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "credentials (issue, rotate and revoke from the Credentials page)"

    @admin.display(description="key id")
    def key(self, obj: PartnerCredential) -> str:
        return f"{obj.key_prefix}…"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Partner)
class PartnerAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "email", "active", "live_keys", "created_at", "credentials_link"]
    list_filter = ["active"]
    search_fields = ["code", "name", "email"]
    ordering = ["code"]
    readonly_fields = ["created_at"]
    fieldsets = [
        (None, {"fields": ["code", "name", "active"]}),
        ("Contact", {"fields": ["email", "msisdn", "officer", "address"]}),
        (
            "API",
            {
                "fields": ["webhook_url", "rate_limit_per_minute"],
                "description": (
                    "Terminal payout states are POSTed, signed, to the webhook URL (empty = no webhook). "
                    "An inactive partner's requests are refused."
                ),
            },
        ),
        ("History", {"fields": ["created_at"]}),
    ]
    inlines = [PartnerCredentialInline]
    actions = ["issue_credentials"]

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name == "webhook_url":
            kwargs["assume_scheme"] = "https"  # webhooks carry payout data: https unless typed otherwise
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(live_key_count=Count("credentials", filter=Q(credentials__revoked_at__isnull=True)))
        )

    @admin.display(description="live keys", ordering="live_key_count")
    def live_keys(self, obj: Partner) -> int:
        return obj.live_key_count

    @admin.display(description="credentials")
    def credentials_link(self, obj: Partner) -> str:
        url = reverse("admin:partners_partner_credentials", args=[quote(obj.pk)])
        return format_html('<a href="{}">Manage</a>', url)

    # --- credentials ------------------------------------------------------------------------

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/credentials/",
                self.admin_site.admin_view(self.credentials_view),
                name="%s_%s_credentials" % info,
            ),
            path(
                "<path:object_id>/credentials/<int:credential_id>/revoke/",
                self.admin_site.admin_view(self.credential_revoke_view),
                name="%s_%s_credential_revoke" % info,
            ),
            *super().get_urls(),
        ]

    @admin.action(description="Issue / rotate credentials", permissions=["change"])
    @sensitive_variables()
    def issue_credentials(self, request, queryset):
        """A new key per selected partner; older keys keep working until revoked (rotation)."""
        issued = [(partner, self._issue(request, partner)) for partner in queryset.order_by("code")]
        return self._issued_response(request, issued)

    @sensitive_variables()
    def credentials_view(self, request, object_id):
        """The partner's keys (prefix only) with a revoke button per live key; POST issues a new one."""
        partner = self._partner_or_deny(request, object_id)
        if request.method == "POST":
            if not self.has_change_permission(request, partner):
                raise PermissionDenied
            return self._issued_response(request, [(partner, self._issue(request, partner))])
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Credentials of {partner.code}",
            "partner": partner,
            "credentials": partner.credentials.order_by("-created_at"),
            "can_change": self.has_change_permission(request, partner),
        }
        return TemplateResponse(request, "admin/partners/partner/credentials.html", context)

    def credential_revoke_view(self, request, object_id, credential_id):
        """POST only: revokes one key at once; requests signed with it are refused from now on."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        partner = self._partner_or_deny(request, object_id)
        if not self.has_change_permission(request, partner):
            raise PermissionDenied
        credential = get_object_or_404(PartnerCredential, partner=partner, pk=credential_id)
        if credential.revoked_at is not None:
            self.message_user(request, f"Key {credential.key_prefix}… was already revoked.", messages.INFO)
        else:
            credential_revoke(partner=partner, key_id=credential.key_id)
            self.log_change(request, partner, f"Revoked API key {credential.key_prefix}…")
            self.message_user(
                request,
                f"Key {credential.key_prefix}… revoked: requests signed with it are refused from now on.",
                messages.SUCCESS,
            )
        return HttpResponseRedirect(reverse("admin:partners_partner_credentials", args=[quote(partner.pk)]))

    def _partner_or_deny(self, request, object_id) -> Partner:
        partner = get_object_or_404(Partner, pk=unquote(object_id))
        if not self.has_view_or_change_permission(request, partner):
            raise PermissionDenied
        return partner

    def _issue(self, request, partner: Partner) -> IssuedCredential:
        issued = credential_issue(partner=partner)
        # The admin history names the key by its prefix only.
        self.log_change(request, partner, f"Issued API key {issued.key_id[:8]}…")
        return issued

    @sensitive_variables()
    def _issued_response(self, request, issued: list[tuple[Partner, IssuedCredential]]):
        """The one page that shows new secrets: rendered now, never cached, never stored."""
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "New API credentials: copy the secrets now",
            "issued": [{"partner": partner, "key_id": i.key_id, "secret": i.secret} for partner, i in issued],
        }
        response = TemplateResponse(request, "admin/partners/partner/credentials_issued.html", context)
        add_never_cache_headers(response)
        return response
