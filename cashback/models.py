from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Round

ZERO = Decimal("0.00")


class CashbackRule(models.Model):
    """Percentage cashback for purchases inside quantity and amount ranges (DOMAIN.md §1).

    Rules are never deleted once configured: a configuration import that replaces the set
    archives the old rows, so each transaction keeps the rule it was computed with.
    """

    name = models.CharField(max_length=200)
    partner = models.ForeignKey(
        "partners.Partner", null=True, blank=True, on_delete=models.PROTECT, help_text="Empty = all partners."
    )
    min_quantity = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])
    max_quantity = models.PositiveIntegerField(null=True, blank=True)
    min_amount = models.DecimalField(max_digits=14, decimal_places=2, default=ZERO)
    max_amount = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    percentage = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        validators=[MinValueValidator(Decimal("0.01")), MaxValueValidator(Decimal("100.00"))],
    )
    max_cashback = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    valid_from = models.DateTimeField()
    valid_until = models.DateTimeField(null=True, blank=True)
    active = models.BooleanField(default=True)
    archived = models.BooleanField(default=False, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(min_quantity__gte=1), name="cashback_rule_min_quantity_positive"),
            models.CheckConstraint(
                condition=Q(max_quantity__isnull=True) | Q(max_quantity__gte=models.F("min_quantity")),
                name="cashback_rule_quantity_range",
            ),
            models.CheckConstraint(condition=Q(min_amount__gte=0), name="cashback_rule_min_amount_nonnegative"),
            models.CheckConstraint(
                condition=Q(max_amount__isnull=True) | Q(max_amount__gte=models.F("min_amount")),
                name="cashback_rule_amount_range",
            ),
            models.CheckConstraint(
                condition=Q(percentage__gt=0) & Q(percentage__lte=100), name="cashback_rule_percentage_range"
            ),
            models.CheckConstraint(
                condition=Q(max_cashback__isnull=True) | Q(max_cashback__gte=0), name="cashback_rule_cap_nonnegative"
            ),
            models.CheckConstraint(
                condition=Q(valid_until__isnull=True) | Q(valid_until__gt=models.F("valid_from")),
                name="cashback_rule_validity_window",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.percentage}%)"

    def clean(self) -> None:
        errors = {}
        if self.max_quantity is not None and self.max_quantity < self.min_quantity:
            errors["max_quantity"] = "Must be at least min_quantity."
        if self.max_amount is not None and self.min_amount is not None and self.max_amount < self.min_amount:
            errors["max_amount"] = "Must be at least min_amount."
        if self.valid_until and self.valid_from and self.valid_until <= self.valid_from:
            errors["valid_until"] = "Must be after valid_from."
        if errors:
            raise ValidationError(errors)


class Transaction(models.Model):
    """One accepted purchase, as the partner posted it, with what Cezbek computed for it."""

    kezbek_ref = models.CharField(max_length=32, unique=True, editable=False)
    partner = models.ForeignKey("partners.Partner", on_delete=models.PROTECT, related_name="transactions")
    partner_ref = models.CharField(max_length=64)
    msisdn = models.CharField(max_length=15, db_index=True)
    email = models.EmailField(blank=True)
    quantity = models.PositiveIntegerField()
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    wallet = models.ForeignKey("wallets.Wallet", on_delete=models.PROTECT)
    rule = models.ForeignKey(CashbackRule, null=True, blank=True, on_delete=models.PROTECT)
    cashback = models.DecimalField(max_digits=14, decimal_places=2)
    reward = models.DecimalField(max_digits=14, decimal_places=2)
    total = models.DecimalField(max_digits=14, decimal_places=2)
    # The customer's tier right after this purchase, as the partner was told (DOMAIN.md §2).
    tier = models.ForeignKey("loyalty.TierLevel", on_delete=models.PROTECT, related_name="+")
    tier_count = models.PositiveIntegerField()
    tier_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["partner", "partner_ref"], name="transaction_unique_partner_ref"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="transaction_amount_positive"),
            models.CheckConstraint(condition=Q(quantity__gte=1), name="transaction_quantity_positive"),
            models.CheckConstraint(
                # Rounded to the cent: exact on PostgreSQL's numeric; SQLite (`make run`) keeps
                # decimals as binary floats, where 512.19 + 5000.00 is not the float of 5512.19.
                condition=Q(total=Round(models.F("cashback") + models.F("reward"), 2)), name="transaction_total_is_sum"
            ),
        ]
        indexes = [models.Index(fields=["partner", "-id"], name="transaction_partner_newest")]
        permissions = [("export_transaction", "Can export transactions as CSV")]

    def __str__(self) -> str:
        return self.kezbek_ref


class Batch(models.Model):
    """A CSV of purchases uploaded by a partner (API) or an operator (admin), processed in chunks (DOMAIN.md §9).

    The counters move only with the chunk that processed the rows, in the same database
    transaction, so `processed = accepted + duplicate + failed` always holds.
    """

    class Status(models.TextChoices):
        QUEUED = "QUEUED"
        RUNNING = "RUNNING"
        DONE = "DONE"

    class Source(models.TextChoices):
        API = "API"
        ADMIN = "ADMIN"

    public_id = models.CharField(max_length=32, unique=True, editable=False, help_text="The batch id partners see.")
    partner = models.ForeignKey("partners.Partner", on_delete=models.PROTECT, related_name="batches")
    source = models.CharField(max_length=8, choices=Source.choices)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The operator, for uploads in the admin.",
    )
    filename = models.CharField(max_length=255, blank=True)
    sha256 = models.CharField(max_length=64, help_text="Of the file as uploaded.")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED, db_index=True)
    total = models.PositiveIntegerField(help_text="Purchase rows in the file.")
    processed = models.PositiveIntegerField(default=0)
    accepted = models.PositiveIntegerField(default=0)
    duplicate = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    chunks = models.PositiveIntegerField(help_text="Units of work; each is processed in one database transaction.")
    created_at = models.DateTimeField(db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(help_text="Last progress: a stalled batch is resumed from here.")

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "batches"
        constraints = [
            models.CheckConstraint(
                condition=Q(processed=models.F("accepted") + models.F("duplicate") + models.F("failed")),
                name="batch_processed_is_sum",
            ),
            models.CheckConstraint(condition=Q(processed__lte=models.F("total")), name="batch_processed_at_most_total"),
            models.CheckConstraint(
                condition=~Q(status="DONE") | Q(processed=models.F("total")), name="batch_done_when_all_processed"
            ),
        ]
        indexes = [models.Index(fields=["partner", "-id"], name="batch_partner_newest")]

    def __str__(self) -> str:
        return self.public_id


class BatchChunk(models.Model):
    """Rows of one batch processed together; `done_at` is set in the transaction that processed them."""

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="chunk_set")
    number = models.PositiveIntegerField()
    rows = models.PositiveIntegerField()
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["batch", "number"]
        constraints = [models.UniqueConstraint(fields=["batch", "number"], name="batch_chunk_unique_number")]

    def __str__(self) -> str:
        return f"{self.batch_id}#{self.number}"


class BatchRow(models.Model):
    """One purchase row of a batch: the cells as uploaded, then its outcome."""

    class Outcome(models.TextChoices):
        PENDING = "pending"
        ACCEPTED = "accepted"
        DUPLICATE = "duplicate"
        FAILED = "failed"

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="rows")
    chunk = models.PositiveIntegerField()
    number = models.PositiveIntegerField(help_text="Row in the file, the header being row 1 (as a spreadsheet shows it).")
    # The cells exactly as uploaded (validated when the row is processed).
    partner_ref = models.TextField(blank=True)
    msisdn = models.TextField(blank=True)
    email = models.TextField(blank=True)
    quantity = models.TextField(blank=True)
    amount = models.TextField(blank=True)
    wallet = models.TextField(blank=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.PENDING)
    transaction = models.ForeignKey(Transaction, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    error_code = models.CharField(max_length=32, blank=True)
    error_field = models.CharField(max_length=100, blank=True)
    error_message = models.TextField(blank=True)

    class Meta:
        ordering = ["batch", "number"]
        constraints = [
            models.UniqueConstraint(fields=["batch", "number"], name="batch_row_unique_number"),
            models.CheckConstraint(
                condition=Q(outcome__in=["accepted", "duplicate"], transaction__isnull=False)
                | Q(outcome__in=["pending", "failed"], transaction__isnull=True),
                name="batch_row_transaction_iff_recorded",
            ),
        ]
        indexes = [models.Index(fields=["batch", "chunk"], name="batch_row_chunk")]

    def __str__(self) -> str:
        return f"{self.batch_id}:{self.number}"
