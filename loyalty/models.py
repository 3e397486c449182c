from decimal import Decimal

from django.db import models
from django.db.models import Q


class TierLevel(models.Model):
    """A rung of the loyalty ladder (DOMAIN.md §2). Archived tiers keep the history they own."""

    name = models.CharField(max_length=32)
    rank = models.PositiveIntegerField(help_text="1 = entry level.")
    promote_after = models.PositiveIntegerField(
        null=True, blank=True, help_text="Purchases in this tier that promote to the next rank; empty on the top tier."
    )
    validity_days = models.PositiveIntegerField(null=True, blank=True, help_text="Empty = never expires.")
    archived = models.BooleanField(default=False, editable=False)

    class Meta:
        ordering = ["rank"]
        constraints = [
            models.UniqueConstraint(fields=["name"], condition=Q(archived=False), name="tier_unique_live_name"),
            models.UniqueConstraint(fields=["rank"], condition=Q(archived=False), name="tier_unique_live_rank"),
            models.CheckConstraint(condition=Q(rank__gte=1), name="tier_rank_positive"),
            models.CheckConstraint(
                condition=Q(promote_after__isnull=True) | Q(promote_after__gte=1), name="tier_promote_after_positive"
            ),
            models.CheckConstraint(
                condition=Q(validity_days__isnull=True) | Q(validity_days__gte=1), name="tier_validity_positive"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class RewardRule(models.Model):
    """A fixed reward for the nth purchase within a tier."""

    tier = models.ForeignKey(TierLevel, on_delete=models.PROTECT, related_name="rewards")
    nth = models.PositiveIntegerField()
    reward = models.DecimalField(max_digits=14, decimal_places=2)
    archived = models.BooleanField(default=False, editable=False)

    class Meta:
        ordering = ["tier__rank", "nth"]
        constraints = [
            models.UniqueConstraint(fields=["tier", "nth"], condition=Q(archived=False), name="reward_unique_live_nth"),
            models.CheckConstraint(condition=Q(nth__gte=1), name="reward_nth_positive"),
            models.CheckConstraint(condition=Q(reward__gt=0), name="reward_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.tier} #{self.nth}: {self.reward}"


class LoyaltyState(models.Model):
    """Where one customer (MSISDN) stands with one partner. Changed only under a row lock."""

    partner = models.ForeignKey("partners.Partner", on_delete=models.PROTECT)
    msisdn = models.CharField(max_length=15)
    tier = models.ForeignKey(TierLevel, on_delete=models.PROTECT)
    count = models.PositiveIntegerField(default=0)
    entered_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["partner", "msisdn"], name="loyalty_state_unique_customer")]

    def __str__(self) -> str:
        return f"{self.partner_id}/{self.msisdn}: {self.tier} ({self.count})"


class JourneyEntry(models.Model):
    """One change of a loyalty state: a purchase, a promotion or a demotion."""

    class Reason(models.TextChoices):
        PURCHASE = "PURCHASE"
        PROMOTED = "PROMOTED"
        DEMOTED = "DEMOTED"

    state = models.ForeignKey(LoyaltyState, on_delete=models.PROTECT, related_name="journey")
    transaction = models.ForeignKey(
        "cashback.Transaction", null=True, blank=True, on_delete=models.PROTECT, related_name="journey"
    )
    reason = models.CharField(max_length=16, choices=Reason.choices)
    tier_before = models.ForeignKey(TierLevel, on_delete=models.PROTECT, related_name="+")
    tier_after = models.ForeignKey(TierLevel, on_delete=models.PROTECT, related_name="+")
    count = models.PositiveIntegerField(help_text="Purchases in tier_after after this change.")
    reward = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0.00"))
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["state", "-id"], name="journey_state_newest")]

    def __str__(self) -> str:
        return f"{self.reason} {self.tier_before} → {self.tier_after}"
