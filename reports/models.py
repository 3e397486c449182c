"""Reconciliation runs and partner invoices (DOMAIN.md §7).

Everything here is written by `reports.services` and never edited afterwards: a settlement run and
its lines are the evidence of what a provider said it paid, and an invoice is what a partner was sent.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q


class SettlementRun(models.Model):
    """One provider settlement file, imported once, with the reconciliation of every line (DOMAIN.md §7).

    The period is the span of provider time the file covers (one UTC day for the daily files of
    PROVIDERS.md): a payout that succeeded through this provider within it and has no line here,
    nor in any other run of the provider, is MISSING_AT_PROVIDER.
    """

    provider = models.ForeignKey("wallets.Provider", on_delete=models.PROTECT, related_name="settlement_runs")
    file = models.FileField(upload_to="settlements/%Y/%m/", max_length=300, help_text="The file exactly as imported.")
    file_name = models.CharField(max_length=255, help_text="The file's name as uploaded.")
    checksum = models.CharField(max_length=64, help_text="SHA-256 of the file's bytes: one file is imported once for a period.")
    period_start = models.DateTimeField(help_text="Start of the provider time the file covers (inclusive).")
    period_end = models.DateTimeField(help_text="End of the provider time the file covers (exclusive).")
    period_source = models.CharField(max_length=20, help_text="Where the period came from: date given, file name, or the lines.")
    line_count = models.PositiveIntegerField(help_text="Data lines in the file (the header not counted).")
    payouts_settled = models.PositiveIntegerField(
        default=0, help_text="UNKNOWN or MANUAL_REVIEW payouts this run found paid and moved to SUCCEEDED."
    )
    imported_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = "settlement run"
        constraints = [
            models.UniqueConstraint(fields=["provider", "checksum", "period_start", "period_end"], name="settlement_run_file_once"),
            models.CheckConstraint(condition=Q(period_end__gt=models.F("period_start")), name="settlement_run_period"),
        ]

    def __str__(self) -> str:
        return f"settlement run {self.pk} ({self.file_name})"


class SettlementLine(models.Model):
    """One line of a settlement file as reconciled, or a payout the file lacks (MISSING_AT_PROVIDER)."""

    class Outcome(models.TextChoices):
        MATCHED = "MATCHED"
        AMOUNT_MISMATCH = "AMOUNT_MISMATCH"
        MISSING_AT_PROVIDER = "MISSING_AT_PROVIDER"
        UNKNOWN_TO_CEZBEK = "UNKNOWN_TO_CEZBEK"
        DUPLICATE_AT_PROVIDER = "DUPLICATE_AT_PROVIDER"

    run = models.ForeignKey(SettlementRun, on_delete=models.PROTECT, related_name="lines")
    line_number = models.PositiveIntegerField(null=True, blank=True, help_text="Line in the file (the header is line 1); empty for a missing payout.")
    outcome = models.CharField(max_length=24, choices=Outcome.choices, db_index=True)
    # The file's columns (PROVIDERS.md), as parsed; a MISSING_AT_PROVIDER line carries the payout's own.
    provider_ref = models.CharField(max_length=100, blank=True)
    client_ref = models.CharField(max_length=100, blank=True)
    wallet = models.CharField(max_length=16, blank=True)
    msisdn = models.CharField(max_length=20, blank=True)
    amount = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    fee = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    status = models.CharField(max_length=20, blank=True)
    settled_at = models.DateTimeField(null=True, blank=True)
    # The payout the line is about, and what it was when the run looked.
    payout = models.ForeignKey("wallets.Payout", null=True, blank=True, on_delete=models.PROTECT, related_name="settlement_lines")
    payout_status = models.CharField(max_length=20, blank=True, help_text="The payout's status before this run.")
    payout_amount = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    payout_settled = models.BooleanField(
        default=False, help_text="This line is the evidence that moved the payout from UNKNOWN or MANUAL_REVIEW to SUCCEEDED."
    )
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["run", "line_number", "id"]
        verbose_name = "settlement line"
        constraints = [
            models.UniqueConstraint(fields=["run", "line_number"], name="settlement_line_once_per_run"),
            models.CheckConstraint(
                condition=~Q(outcome="MISSING_AT_PROVIDER") | Q(line_number__isnull=True, payout__isnull=False),
                name="settlement_line_missing_is_a_payout",
            ),
            models.CheckConstraint(
                condition=Q(outcome="MISSING_AT_PROVIDER") | Q(line_number__isnull=False, amount__isnull=False),
                name="settlement_line_from_the_file",
            ),
            models.CheckConstraint(
                condition=Q(payout_settled=False) | Q(outcome="UNKNOWN_TO_CEZBEK", payout__isnull=False),
                name="settlement_line_settles_a_payout",
            ),
        ]
        indexes = [
            models.Index(fields=["run", "outcome"], name="settlement_line_run_outcome"),
            models.Index(fields=["client_ref"], name="settlement_line_client_ref"),
        ]

    def __str__(self) -> str:
        where = f"line {self.line_number}" if self.line_number else "missing"
        return f"{where} {self.outcome}"


class Invoice(models.Model):
    """A partner's invoice for one calendar month in Asia/Jakarta: its figures and the CSV it was sent.

    One per (partner, month): generating a month again replaces the figures and the file.
    """

    partner = models.ForeignKey("partners.Partner", on_delete=models.PROTECT, related_name="invoices")
    month = models.DateField(help_text="The first day of the invoiced calendar month (Asia/Jakarta).")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField(help_text="Exclusive: the first instant of the next month.")
    transactions = models.PositiveIntegerField(help_text="Purchases accepted in the month.")
    purchase_amount = models.DecimalField(max_digits=16, decimal_places=2)
    cashback = models.DecimalField(max_digits=16, decimal_places=2)
    reward = models.DecimalField(max_digits=16, decimal_places=2)
    payouts_succeeded = models.PositiveIntegerField(help_text="Payouts that reached SUCCEEDED in the month.")
    payouts_succeeded_amount = models.DecimalField(max_digits=16, decimal_places=2)
    provider_fees = models.DecimalField(max_digits=16, decimal_places=2, help_text="Route fees of those payouts.")
    file = models.FileField(upload_to="invoices/", max_length=300)
    generated_at = models.DateTimeField()
    emailed_at = models.DateTimeField(null=True, blank=True)
    emailed_to = models.EmailField(blank=True)
    email_error = models.CharField(max_length=300, blank=True, help_text="Why the last sending failed, if it did.")

    class Meta:
        ordering = ["-month", "partner__code"]
        constraints = [
            models.UniqueConstraint(fields=["partner", "month"], name="invoice_one_per_partner_month"),
            models.CheckConstraint(condition=Q(month__day=1), name="invoice_month_first_day"),
        ]

    def __str__(self) -> str:
        return f"{self.number}"

    @property
    def number(self) -> str:
        """The invoice number partners see: CZB-<partner>-<YYYY-MM>."""
        return f"CZB-{self.partner.code}-{self.month:%Y-%m}"


# --- Scheduled jobs (cezbek/schedule.py, cezbek/jobs.py) and the reward digest (wallets/digest.py) ------


class JobRun(models.Model):
    """One period of one periodic job, claimed before its body runs (cezbek/jobs.py).

    The row is inserted first, unique per (job, period): when two beats fire the job, the firing that
    loses the insert only counts itself in `duplicates`. A FAILED period may be claimed again by a later
    firing of the same period; a RUNNING one only once the job's lease has passed (its worker died).
    """

    class Status(models.TextChoices):
        RUNNING = "RUNNING"
        DONE = "DONE"
        FAILED = "FAILED"

    job = models.CharField(max_length=64, help_text="The job's name in cezbek/schedule.py.")
    period = models.CharField(
        max_length=40, help_text="The period this run stands for: a day, a month, or the start of an interval (Asia/Jakarta)."
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    attempts = models.PositiveIntegerField(default=1, help_text="Claims of this period: more than 1 after a failure or a lost worker.")
    duplicates = models.PositiveIntegerField(default=0, help_text="Firings of this period that found it claimed and did nothing.")
    runner = models.CharField(max_length=200, blank=True, help_text="Host and process id of the worker that ran it.")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True, help_text="What the job reported (counts).")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        verbose_name = "job run"
        constraints = [models.UniqueConstraint(fields=["job", "period"], name="job_run_once_per_period")]
        indexes = [models.Index(fields=["job", "started_at"], name="job_run_job_started")]

    def __str__(self) -> str:
        return f"{self.job} {self.period} {self.status}"


class ScheduledJob(models.Model):
    """A job of cezbek/schedule.py as `schedule_sync` last wrote it into django-celery-beat.

    `timing` is the code's timing as last written: a PeriodicTask whose timing no longer matches it was
    changed by an operator, and sync keeps that change. Only jobs recorded here are removed by sync.
    """

    name = models.CharField(max_length=64, unique=True)
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    timing = models.CharField(max_length=200, help_text="The code's timing as sync last wrote it.")
    synced_at = models.DateTimeField()

    class Meta:
        ordering = ["name"]
        verbose_name = "scheduled job"

    def __str__(self) -> str:
        return self.name


class RewardDigest(models.Model):
    """One customer's nightly reward digest (wallets/digest.py): at most one email per address and day.

    Inserted as SENDING before the email leaves, so a second run of the same day finds it and sends nothing.
    """

    class Status(models.TextChoices):
        SENDING = "SENDING"
        SENT = "SENT"
        FAILED = "FAILED"

    email = models.EmailField(help_text="The customer's address, lower-cased.")
    day = models.DateField(help_text="The day (Asia/Jakarta) whose SUCCEEDED payouts the email sums up.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.SENDING)
    payouts = models.PositiveIntegerField()
    total = models.DecimalField(max_digits=16, decimal_places=2)
    attempts = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-day", "email"]
        verbose_name = "reward digest"
        constraints = [models.UniqueConstraint(fields=["email", "day"], name="reward_digest_once_per_day")]

    def __str__(self) -> str:
        return f"digest {self.day} {self.email} {self.status}"
