from decimal import Decimal

from django.core.exceptions import ValidationError
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

    def has_higher(self) -> bool:
        """Whether a live tier ranks above this one (else this is the top tier)."""
        return TierLevel.objects.filter(archived=False, rank__gt=self.rank).exclude(pk=self.pk).exists()

    def clean(self) -> None:
        # The ladder's shape as `cezbek_config import` checks it, so that export → import stays a no-op.
        if self.archived or self.rank is None:
            return
        if self.promote_after is not None and not self.has_higher():
            raise ValidationError({"promote_after": "Must be empty on the top tier: no tier ranks higher."})
        if self.pk and self.promote_after is not None:
            beyond = self.rewards.filter(archived=False, nth__gt=self.promote_after).order_by("nth").first()
            if beyond is not None:
                raise ValidationError(
                    {"promote_after": f"The reward for purchase {beyond.nth} would never be reached: customers move up after {self.promote_after}."}
                )


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

    def clean(self) -> None:
        try:
            tier = self.tier  # on its tier's page: the tier as edited there, saved or not
        except TierLevel.DoesNotExist:
            return  # no tier chosen: the field's own error says so
        if self.archived or self.nth is None:
            return
        if tier.promote_after is not None and self.nth > tier.promote_after and tier.has_higher():
            raise ValidationError(
                {"nth": f"{tier.name} promotes after {tier.promote_after} purchases, so purchase {self.nth} is never reached."}
            )


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
