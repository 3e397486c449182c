"""Admin for partners: onboarding (details, logo, webhook) and their API credentials (API.md "Authentication").

A secret exists in clear only in the response right after it is issued: it is never put in a
message, the session, a log line or the admin history, and that response is never cached.

Logos live in the default file storage (S3 in production, local files otherwise: settings.STORAGES)
and are always served through `<partner>/logo/` here, to staff who may view the partner: the bucket
stays private and local files need no media server.
"""

import mimetypes
from pathlib import PurePosixPath

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.options import IS_POPUP_VAR
from django.contrib.admin.utils import quote, unquote
from django.contrib.admin.widgets import AdminFileWidget
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import FileResponse, Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html
from django.views.decorators.debug import sensitive_variables

from partners.models import Partner, PartnerCredential
from partners.services import IssuedCredential, credential_issue, credential_revoke


def partner_logo_url(partner: Partner) -> str:
    """The admin URL that serves the partner's logo; it changes with every upload (no stale caches)."""
    version = PurePosixPath(partner.logo.name).stem
    return reverse("admin:partners_partner_logo", args=[quote(partner.pk)]) + f"?v={version}"


class LogoInput(AdminFileWidget):
    """The upload field, with the current logo shown as a small image instead of a storage URL."""

    template_name = "admin/partners/partner/logo_input.html"

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        instance = getattr(value, "instance", None)
        if context["widget"]["is_initial"] and instance is not None and instance.pk:
            context["widget"]["logo_url"] = partner_logo_url(instance)
        return context


class WebhookFilter(admin.SimpleListFilter):
    title = "webhook"
    parameter_name = "webhook"

    def lookups(self, request, model_admin):
        return [("set", "Set"), ("none", "None")]

    def queryset(self, request, queryset):
        no_webhook = Q(webhook_url__isnull=True) | Q(webhook_url="")
        if self.value() == "set":
            return queryset.exclude(no_webhook)
        if self.value() == "none":
            return queryset.filter(no_webhook)
        return queryset


class LiveKeysFilter(admin.SimpleListFilter):
    """Partners still to be given a key, or whose every key was revoked, cannot call the API."""

    title = "live API keys"
    parameter_name = "keys"

    def lookups(self, request, model_admin):
        return [("some", "At least one"), ("none", "None")]

    def queryset(self, request, queryset):
        if self.value() == "some":
            return queryset.filter(live_key_count__gt=0)
        if self.value() == "none":
            return queryset.filter(live_key_count=0)
        return queryset


class RateLimitFilter(admin.SimpleListFilter):
    title = "rate limit"
    parameter_name = "rate_limit"

    def lookups(self, request, model_admin):
        return [("own", "Own limit"), ("global", "Global default")]

    def queryset(self, request, queryset):
        if self.value() == "own":
            return queryset.filter(rate_limit_per_minute__isnull=False)
        if self.value() == "global":
            return queryset.filter(rate_limit_per_minute__isnull=True)
        return queryset


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
    list_display = [
        "logo_thumb", "code", "name", "active", "rate_limit", "live_keys", "webhook_set", "created_at",
        "credentials_link",
    ]
    list_display_links = ["code"]
    list_filter = ["active", LiveKeysFilter, WebhookFilter, RateLimitFilter]
    search_fields = ["code", "name", "email"]
    date_hierarchy = "created_at"
    ordering = ["code"]
    readonly_fields = ["created_at", "logo_preview"]
    fieldsets = [
        (
            None,
            {
                "fields": ["code", "name", "active", "logo"],
                "description": (
                    "After saving a new partner, issue its API key on the Credentials page: the secret is "
                    "shown once, there."
                ),
            },
        ),
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
        if db_field.name == "logo":
            kwargs["widget"] = LogoInput(attrs={"accept": "image/png,image/jpeg,image/webp"})
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or self.has_change_permission(request, obj):
            return fieldsets
        # Read-only staff see the logo itself, not a link to where the storage keeps it.
        return [
            (name, {**options, "fields": ["logo_preview" if f == "logo" else f for f in options["fields"]]})
            for name, options in fieldsets
        ]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(live_key_count=Count("credentials", filter=Q(credentials__revoked_at__isnull=True)))
        )

    @admin.display(description="logo")
    def logo_thumb(self, obj: Partner) -> str:
        if not obj.logo:
            return "—"
        return format_html(
            '<img src="{}" alt="{} logo" style="height:24px;max-width:72px;object-fit:contain;vertical-align:middle">',
            partner_logo_url(obj),
            obj.code,
        )

    @admin.display(description="logo")
    def logo_preview(self, obj: Partner) -> str:
        if not obj.logo:
            return "—"
        return format_html(
            '<img src="{}" alt="{} logo" style="max-height:64px;max-width:160px;object-fit:contain">',
            partner_logo_url(obj),
            obj.code,
        )

    @admin.display(description="rate limit / min", ordering="rate_limit_per_minute")
    def rate_limit(self, obj: Partner) -> str:
        if obj.rate_limit_per_minute is None:
            return f"{settings.CEZBEK_RATE_LIMIT_PER_MINUTE:,} (global)"
        return f"{obj.rate_limit_per_minute:,}"

    @admin.display(description="live keys", ordering="live_key_count")
    def live_keys(self, obj: Partner) -> int:
        return obj.live_key_count

    @admin.display(description="webhook", boolean=True)
    def webhook_set(self, obj: Partner) -> bool:
        return bool(obj.webhook_url)

    @admin.display(description="credentials")
    def credentials_link(self, obj: Partner) -> str:
        url = reverse("admin:partners_partner_credentials", args=[quote(obj.pk)])
        return format_html('<a href="{}">Manage</a>', url)

    def response_add(self, request, obj, post_url_continue=None):
        """Onboarding goes on where the partner's first key is issued (unless another button was pressed)."""
        response = super().response_add(request, obj, post_url_continue)
        other_button = {IS_POPUP_VAR, "_continue", "_addanother", "_saveasnew"} & set(request.POST)
        if other_button or not self.has_change_permission(request, obj):
            return response
        self.message_user(
            request, f"Next: issue the API key of {obj.code} below. Its secret is shown once.", messages.INFO
        )
        return HttpResponseRedirect(reverse("admin:partners_partner_credentials", args=[quote(obj.pk)]))

    # --- logo ---------------------------------------------------------------------------------

    def logo_view(self, request, object_id):
        """The partner's logo, read from the default storage, for staff who may view the partner."""
        partner = self._partner_or_deny(request, object_id)
        if not partner.logo:
            raise Http404("This partner has no logo.")
        try:
            handle = partner.logo.storage.open(partner.logo.name, "rb")
        except FileNotFoundError:
            raise Http404("The logo file is missing from the storage.") from None
        content_type = mimetypes.guess_type(partner.logo.name)[0] or "application/octet-stream"
        response = FileResponse(handle, content_type=content_type)
        response["Cache-Control"] = "private, max-age=86400"  # the URL changes with every upload
        return response

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
                "<path:object_id>/logo/",
                self.admin_site.admin_view(self.logo_view),
                name="%s_%s_logo" % info,
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


from partners import webhooks_admin  # noqa: E402,F401  (webhook deliveries: partners/webhooks_admin.py)
