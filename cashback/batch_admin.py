"""Admin for batch uploads (DOMAIN.md §9): operators upload a partner's CSV, follow its progress and
download the per-row results. The "add" page is the upload form; a batch is never edited or deleted.
"""

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from cashback import batches
from cashback.models import Batch
from cezbek.errors import ValidationFailed
from partners.models import Partner

UPLOAD_HELP = (
    "A UTF-8 CSV whose first row names the columns partner_ref, msisdn, quantity, amount, wallet and optionally "
    "email (the fields of the partner API; other columns are ignored), then one purchase per row — at most "
    f"{settings.CEZBEK_BATCH_MAX_ROWS} rows. Each row is recorded exactly as if the partner had posted it: same "
    "validation, cashback rules, loyalty and payout; a partner_ref already recorded with the same content counts "
    "as a duplicate, with different content as a conflict. A file that cannot be read as a whole is refused and "
    "nothing is created."
)


class BatchUploadForm(forms.ModelForm):
    file = forms.FileField(help_text=UPLOAD_HELP)

    class Meta:
        model = Batch
        fields = ["partner"]
        help_texts = {"partner": "The purchases are recorded as this partner's, as if it had uploaded them."}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["partner"].queryset = Partner.objects.filter(active=True).order_by("code")
        self.content = b""

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > settings.CEZBEK_BATCH_MAX_BYTES:
            raise forms.ValidationError(f"The file may be at most {settings.CEZBEK_BATCH_MAX_BYTES} bytes.")
        self.content = upload.read()
        try:
            batches.batch_file_read(data=self.content)
        except ValidationFailed as error:
            raise forms.ValidationError(error.message) from None
        return upload


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):
    list_display = [
        "public_id", "partner", "source", "status", "progress", "accepted", "duplicate", "failed", "filename",
        "uploaded_by", "created_at", "finished_at",
    ]
    list_filter = ["status", "source", "partner"]
    list_select_related = ["partner", "uploaded_by"]
    search_fields = ["public_id", "filename", "partner__code", "sha256"]
    date_hierarchy = "created_at"
    ordering = ["-id"]
    actions = ["resume"]
    view_fields = [
        "public_id", "partner", "source", "uploaded_by", "filename", "sha256", "status", "progress", "total",
        "processed", "accepted", "duplicate", "failed", "results", "chunks", "created_at", "started_at",
        "finished_at", "updated_at",
    ]

    # --- uploading: the "add" page ------------------------------------------------------------------

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = BatchUploadForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [(None, {"fields": ["partner", "file"]})]
        return [(None, {"fields": self.view_fields})]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.view_fields

    def save_form(self, request, form, change):
        upload = form.cleaned_data["file"]
        return batches.batch_create(
            partner=form.cleaned_data["partner"],
            data=form.content,
            source=Batch.Source.ADMIN,
            filename=upload.name,
            uploaded_by=request.user,
        )

    def save_model(self, request, obj, form, change):
        pass  # batch_create stored it

    def save_related(self, request, form, formsets, change):
        pass

    def response_add(self, request, obj, post_url_continue=None):
        self.message_user(
            request, f"Batch {obj.public_id} queued: {obj.total} rows for {obj.partner.code}.", messages.SUCCESS
        )
        return HttpResponseRedirect(reverse("admin:cashback_batch_change", args=[quote(obj.pk)]))

    # --- read-only afterwards -----------------------------------------------------------------------

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="progress")
    def progress(self, obj: Batch) -> str:
        percent = obj.processed * 100 // obj.total if obj.total else 100
        return format_html(
            '<progress value="{}" max="{}" style="width: 8em"></progress> {} / {} ({}%)',
            obj.processed, obj.total, obj.processed, obj.total, percent,
        )

    @admin.display(description="results")
    def results(self, obj: Batch) -> str:
        url = reverse("admin:cashback_batch_results", args=[quote(obj.pk)])
        return format_html('<a href="{}">Download the per-row results (CSV)</a>', url)

    def get_urls(self):
        return [
            path("<path:object_id>/results.csv", self.admin_site.admin_view(self.results_view), name="cashback_batch_results"),
            *super().get_urls(),
        ]

    def results_view(self, request, object_id):
        if not self.has_view_permission(request):
            raise PermissionDenied
        batch = get_object_or_404(Batch, pk=unquote(object_id))
        response = StreamingHttpResponse(batches.batch_results_csv(batch=batch), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{batch.public_id}-results.csv"'
        return response

    @admin.action(description="Resume selected batches (chunks already done are skipped)", permissions=["add"])
    def resume(self, request, queryset):
        resumed = 0
        for batch in queryset.exclude(status=Batch.Status.DONE):
            batches.batch_resume(batch=batch)
            resumed += 1
        self.message_user(request, f"{resumed} batch(es) queued again.", messages.SUCCESS)
