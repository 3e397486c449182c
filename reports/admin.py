"""Finance's admin: settlement files in, reconciliation runs and their lines, partner invoices out (DOMAIN.md §7);
and, for everyone on staff, what the periodic jobs did and the nightly reward digests sent.

Runs, lines and invoices are evidence and are read-only here. Importing a settlement file needs
`reports.add_settlementrun` (finance); looking needs the view permissions; sending an invoice again
needs `reports.change_invoice`.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from cashback.admin import ReadOnlyAdmin
from cezbek.errors import CezbekError
from reports import selectors
from reports.models import Invoice, JobRun, RewardDigest, SettlementLine, SettlementRun
from reports.services import invoice_email, settlement_import
from wallets.models import Provider

Outcome = SettlementLine.Outcome
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
LINES_PER_PAGE = 200


def _reason(error: CezbekError) -> str:
    field_messages = [m for ms in error.fields.values() for m in ms]
    return " ".join(field_messages) or error.message


class SettlementUploadForm(forms.Form):
    provider = forms.ModelChoiceField(queryset=Provider.objects.order_by("code"), to_field_name="code", empty_label=None)
    file = forms.FileField(help_text="The provider's settlement CSV: provider_ref,client_ref,wallet,msisdn,amount,fee,status,settled_at.")
    settlement_date = forms.DateField(
        required=False,
        help_text=(
            "The day (UTC) the file settles, YYYY-MM-DD. Leave empty to take it from the file name "
            "(<provider>-YYYY-MM-DD.csv), else from the lines. Payouts that succeeded through the provider "
            "that day and appear in none of its files are reported MISSING_AT_PROVIDER."
        ),
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_UPLOAD_BYTES:
            raise forms.ValidationError(f"The file is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB.")
        return upload


@admin.register(SettlementRun)
class SettlementRunAdmin(ReadOnlyAdmin):
    """A run's page: counts per outcome, its lines filterable by outcome, the mismatches as CSV, the file."""

    list_display = [
        "id",
        "provider",
        "file_name",
        "period",
        "line_count",
        "matched",
        "amount_mismatch",
        "missing_at_provider",
        "unknown_to_cezbek",
        "duplicate_at_provider",
        "payouts_settled",
        "imported_by",
        "created_at",
    ]
    list_filter = ["provider"]
    list_select_related = ["provider", "imported_by"]
    search_fields = ["file_name", "checksum"]
    date_hierarchy = "period_start"
    ordering = ["-id"]
    leading_fields = ["provider", "file_name", "period_start", "period_end", "period_source", "line_count", "payouts_settled", "imported_by", "created_at"]
    hidden_fields = frozenset({"file"})
    change_form_template = "admin/reports/settlementrun/change_form.html"

    def get_queryset(self, request):
        return selectors.runs_with_counts()

    @admin.display(description="period (UTC)", ordering="period_start")
    def period(self, obj: SettlementRun) -> str:
        days = (obj.period_end - obj.period_start).days
        first = f"{obj.period_start:%Y-%m-%d}"
        return first if days == 1 else f"{first} – {obj.period_end:%Y-%m-%d} (excl.)"

    def _count(outcome):
        @admin.display(description=outcome.value.replace("_", " ").lower(), ordering=f"n_{outcome.value}")
        def show(self, obj):
            return getattr(obj, f"n_{outcome.value}")

        return show

    matched = _count(Outcome.MATCHED)
    amount_mismatch = _count(Outcome.AMOUNT_MISMATCH)
    missing_at_provider = _count(Outcome.MISSING_AT_PROVIDER)
    unknown_to_cezbek = _count(Outcome.UNKNOWN_TO_CEZBEK)
    duplicate_at_provider = _count(Outcome.DUPLICATE_AT_PROVIDER)
    del _count

    # --- importing: the "add" page is the upload form --------------------------------------------

    def has_add_permission(self, request):
        return request.user.has_perm("reports.add_settlementrun")

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = SettlementUploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                run = settlement_import(
                    provider_code=form.cleaned_data["provider"].code,
                    content=upload.read(),
                    file_name=upload.name,
                    settlement_date=form.cleaned_data["settlement_date"],
                    actor=request.user,
                )
            except CezbekError as error:
                form.add_error(None, _reason(error))
            else:
                counts = selectors.run_counts(run=run)
                summary = ", ".join(f"{outcome} {n}" for outcome, n in counts.items())
                self.log_addition(request, run, f"Imported {run.file_name}")
                self.message_user(request, f"Settlement run {run.pk} imported: {summary}.", messages.SUCCESS)
                if run.payouts_settled:
                    self.message_user(
                        request,
                        f"{run.payouts_settled} payout(s) found paid moved to SUCCEEDED with this run as evidence.",
                        messages.WARNING,
                    )
                return HttpResponseRedirect(reverse("admin:reports_settlementrun_change", args=[quote(run.pk)]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Import a settlement file",
            "form": form,
            "has_view_permission": self.has_view_permission(request),
        }
        return TemplateResponse(request, "admin/reports/settlementrun/upload.html", context)

    # --- the run's page ----------------------------------------------------------------------------

    def change_view(self, request, object_id, form_url="", extra_context=None):
        run = self.get_object(request, unquote(object_id))
        if run is None or not self.has_view_permission(request, run):
            return super().change_view(request, object_id, form_url, extra_context)
        outcome = request.GET.get("outcome") or ""
        if outcome not in Outcome.values:
            outcome = ""
        page = Paginator(selectors.run_lines(run=run, outcome=outcome or None), LINES_PER_PAGE).get_page(request.GET.get("page"))
        counts = selectors.run_counts(run=run)
        extra_context = {
            **(extra_context or {}),
            "run": run,
            "counts": list(counts.items()),
            "total": sum(counts.values()),
            "outcome": outcome,
            "page": page,
            "mismatches": sum(n for o, n in counts.items() if o != Outcome.MATCHED),
            "mismatches_url": reverse("admin:reports_settlementrun_mismatches", args=[quote(run.pk)]),
            "file_url": reverse("admin:reports_settlementrun_file", args=[quote(run.pk)]),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        return [
            path("<path:object_id>/mismatches.csv", self.admin_site.admin_view(self.mismatches_view), name="reports_settlementrun_mismatches"),
            path("<path:object_id>/file/", self.admin_site.admin_view(self.file_view), name="reports_settlementrun_file"),
            *super().get_urls(),
        ]

    def _run_for(self, request, object_id) -> SettlementRun:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return get_object_or_404(SettlementRun.objects.select_related("provider"), pk=unquote(object_id))

    def mismatches_view(self, request, object_id):
        """Every line that is not MATCHED, as CSV."""
        run = self._run_for(request, object_id)
        response = HttpResponse(selectors.run_mismatches_csv(run=run), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="settlement-run-{run.pk}-{run.provider.code.lower()}-mismatches.csv"'
        return response

    def file_view(self, request, object_id):
        """The settlement file exactly as it was imported."""
        run = self._run_for(request, object_id)
        try:
            handle = default_storage.open(run.file.name, "rb")
        except FileNotFoundError:
            raise Http404("The stored file is gone.") from None
        return FileResponse(handle, as_attachment=True, filename=run.file_name, content_type="text/csv")


@admin.register(SettlementLine)
class SettlementLineAdmin(ReadOnlyAdmin):
    """Every reconciled line of every run: find a reference or an MSISDN across files."""

    list_display = ["id", "run", "line_number", "outcome", "provider_ref", "client_ref", "msisdn", "amount", "payout_link", "payout_status", "payout_settled", "note"]
    list_filter = ["outcome", "payout_settled", "run__provider"]
    list_select_related = ["run", "payout"]
    search_fields = ["client_ref", "provider_ref", "msisdn"]
    ordering = ["-run_id", "line_number", "id"]
    show_full_result_count = False
    raw_id_fields = ["run", "payout"]
    leading_fields = ["run", "line_number", "outcome", "payout", "payout_status", "payout_amount", "payout_settled", "note"]

    @admin.display(description="payout", ordering="payout_id")
    def payout_link(self, obj: SettlementLine) -> str:
        if not obj.payout_id:
            return "—"
        return format_html('<a href="{}">{}</a>', reverse("admin:wallets_payout_change", args=[obj.payout_id]), obj.payout_id)


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyAdmin):
    """Partner invoices as generated (`invoice_partners`, monthly by beat); the CSV as sent."""

    list_display = [
        "number",
        "partner",
        "month_label",
        "transactions",
        "purchase_amount",
        "cashback",
        "reward",
        "payouts_succeeded",
        "payouts_succeeded_amount",
        "provider_fees",
        "generated_at",
        "emailed",
        "download",
    ]
    list_filter = ["partner", "month"]
    list_select_related = ["partner"]
    search_fields = ["partner__code", "partner__name"]
    ordering = ["-month", "partner__code"]
    leading_fields = ["partner", "month", "period_start", "period_end"]
    hidden_fields = frozenset({"file"})
    actions = ["send_again"]

    def get_fields(self, request, obj=None):
        return [*super().get_fields(request, obj), "download"]

    @admin.display(description="month", ordering="month")
    def month_label(self, obj: Invoice) -> str:
        return f"{obj.month:%Y-%m}"

    @admin.display(description="emailed")
    def emailed(self, obj: Invoice) -> str:
        if obj.emailed_at:
            return f"{obj.emailed_to}"
        return f"no: {obj.email_error}" if obj.email_error else "not yet"

    @admin.display(description="CSV")
    def download(self, obj: Invoice) -> str:
        if not obj.pk:
            return "—"
        return format_html('<a href="{}">download</a>', reverse("admin:reports_invoice_download", args=[quote(obj.pk)]))

    def has_send_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("reports.change_invoice")

    @admin.action(description="Email selected invoices to their partner again", permissions=["send"])
    def send_again(self, request, queryset):
        for invoice in queryset.select_related("partner").order_by("pk"):
            if invoice_email(invoice=invoice):
                self.log_change(request, invoice, f"Emailed to {invoice.emailed_to}")
                self.message_user(request, f"{invoice.number} emailed to {invoice.emailed_to}.", messages.SUCCESS)
            else:
                self.message_user(request, f"{invoice.number} not emailed: {invoice.email_error}.", messages.ERROR)

    def get_urls(self):
        return [
            path("<path:object_id>/download/", self.admin_site.admin_view(self.download_view), name="reports_invoice_download"),
            *super().get_urls(),
        ]

    def download_view(self, request, object_id):
        """The invoice's CSV from storage (S3 in production), exactly as it was emailed."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        invoice = get_object_or_404(Invoice.objects.select_related("partner"), pk=unquote(object_id))
        try:
            handle = default_storage.open(invoice.file.name, "rb")
        except FileNotFoundError:
            raise Http404("The stored file is gone.") from None
        return FileResponse(
            handle, as_attachment=True, filename=f"cezbek-invoice-{invoice.partner.code}-{invoice.month:%Y-%m}.csv", content_type="text/csv"
        )


@admin.register(JobRun)
class JobRunAdmin(ReadOnlyAdmin):
    """One row per period of a periodic job (cezbek/jobs.py): did last night's job run, how long,
    what it reported, and why it failed. Written by the jobs only."""

    list_display = ["job", "period", "status", "attempts", "duplicates", "started_at", "duration", "runner"]
    list_filter = ["status", "job"]
    search_fields = ["job", "period", "error"]
    date_hierarchy = "started_at"
    ordering = ["-started_at", "-id"]
    leading_fields = ["job", "period", "status", "started_at", "finished_at", "attempts", "duplicates", "runner", "result", "error"]

    @admin.display(description="duration")
    def duration(self, obj: JobRun) -> str:
        if obj.finished_at is None:
            return "running" if obj.status == JobRun.Status.RUNNING else "-"
        seconds = (obj.finished_at - obj.started_at).total_seconds()
        return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


@admin.register(RewardDigest)
class RewardDigestAdmin(ReadOnlyAdmin):
    """The nightly reward digests (wallets/digest.py): one per address and day, as sent or refused."""

    list_display = ["day", "email", "status", "payouts", "total", "attempts", "sent_at", "error"]
    list_filter = ["status", "day"]
    search_fields = ["email"]
    date_hierarchy = "day"
    ordering = ["-day", "email"]
    leading_fields = ["day", "email", "status", "payouts", "total", "attempts", "created_at", "sent_at", "error"]
