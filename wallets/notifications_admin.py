"""Admin for customer emails (wallets/notifications.py): the template, its preview, and the sent-mail log.

The template is checked on save (an unknown placeholder or a stray brace is refused, naming it).
"Preview" (a button in the form, and a link on a saved template) renders it with sample data,
without saving and without sending anything.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from cashback.admin import ReadOnlyAdmin
from wallets.models import EmailNotification, EmailTemplate
from wallets.notifications import PLACEHOLDERS, SAMPLE_VALUES, TemplateProblem, email_send_again, render_email

PREVIEW = "_preview"


class EmailTemplateForm(forms.ModelForm):
    class Meta:
        model = EmailTemplate
        fields = ["purpose", "subject", "body_text", "body_html"]
        widgets = {
            "subject": forms.TextInput(attrs={"size": 100}),
            "body_text": forms.Textarea(attrs={"rows": 14, "cols": 100}),
            "body_html": forms.Textarea(attrs={"rows": 10, "cols": 100}),
        }


def _placeholder_help() -> str:
    items = format_html_join("", "<li><code>{{{}}}</code> — {}</li>", ((name, text) for name, text in PLACEHOLDERS.items()))
    return format_html(
        "Write placeholders as <code>{{name}}</code> (or <code>{{{{ name }}}}</code>); there are no other braces, "
        "tags or filters. Values are HTML-escaped in the HTML body.<ul>{}</ul>",
        items,
    )


@admin.register(EmailTemplate)
class EmailTemplateAdmin(admin.ModelAdmin):
    form = EmailTemplateForm
    list_display = ["purpose", "subject", "updated_at"]
    readonly_fields = ["updated_at"]
    change_form_template = "admin/wallets/emailtemplate/change_form.html"

    def get_fieldsets(self, request, obj=None):
        return [
            (None, {"fields": ["purpose", "subject", "body_text", "body_html", "updated_at"], "description": _placeholder_help()}),
        ]

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path("<path:object_id>/preview/", self.admin_site.admin_view(self.preview_view), name="%s_%s_preview" % info),
            *super().get_urls(),
        ]

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        """The form's Preview button renders what was typed, with sample data, and saves nothing."""
        if request.method == "POST" and PREVIEW in request.POST:
            obj = self.get_object(request, unquote(object_id)) if object_id else None
            if obj is None and object_id:
                raise PermissionDenied
            permitted = self.has_change_permission(request, obj) if obj else self.has_add_permission(request)
            if not permitted:
                raise PermissionDenied
            form = self.get_form(request, obj, change=obj is not None)(request.POST, instance=obj)
            if form.is_valid():
                return self._preview_response(request, form.instance, unsaved=True)
            # Invalid: the ordinary form path shows the errors (and saves nothing).
        return super().changeform_view(request, object_id, form_url, extra_context)

    def preview_view(self, request, object_id):
        template = get_object_or_404(EmailTemplate, pk=unquote(object_id))
        if not self.has_view_or_change_permission(request, template):
            raise PermissionDenied
        return self._preview_response(request, template, unsaved=False)

    def _preview_response(self, request, template: EmailTemplate, *, unsaved: bool):
        try:
            rendered, problem = render_email(template=template, values=SAMPLE_VALUES), ""
        except TemplateProblem as exc:  # a saved template changed outside the admin
            rendered, problem = None, str(exc)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Preview: {template}",
            "template": template,
            "rendered": rendered,
            "problem": problem,
            "unsaved": unsaved,
            "sample": SAMPLE_VALUES,
            "back_url": reverse("admin:wallets_emailtemplate_change", args=[quote(template.pk)]) if template.pk else "",
        }
        return TemplateResponse(request, "admin/wallets/emailtemplate/preview.html", context)


@admin.register(EmailNotification)
class EmailNotificationAdmin(ReadOnlyAdmin):
    list_display = ["id", "payout_id", "to", "status", "subject", "attempts", "error", "provider_message_id", "sent_at", "created_at"]
    list_filter = ["status"]
    search_fields = ["=to", "=payout__id", "=provider_message_id"]
    search_help_text = "An email address, a payout id or a message id, exactly."
    date_hierarchy = "created_at"
    ordering = ["-id"]
    raw_id_fields = ["payout"]
    actions = ["send_again"]

    def has_send_again_permission(self, request) -> bool:
        return request.user.has_perm("wallets.change_emailnotification")

    @admin.action(description="Send the selected emails again (those not sent)", permissions=["send_again"])
    def send_again(self, request, queryset):
        queued = sum(email_send_again(notification=n) for n in queryset.order_by("id"))
        skipped = queryset.count() - queued
        self.message_user(
            request,
            f"{queued} email(s) queued to be sent again"
            + (f"; {skipped} left alone (already sent, or being sent right now)" if skipped else "")
            + ".",
            messages.SUCCESS if queued else messages.WARNING,
        )
