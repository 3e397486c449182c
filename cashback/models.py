from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

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
                condition=Q(total=models.F("cashback") + models.F("reward")), name="transaction_total_is_sum"
            ),
        ]
        indexes = [models.Index(fields=["partner", "-id"], name="transaction_partner_newest")]

    def __str__(self) -> str:
        return self.kezbek_ref
