from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

# As `cezbek_config import` takes them, so that what the admin accepts exports and imports again.
code_validator = RegexValidator(r"^[A-Z0-9_]{2,16}$", "2 to 16 upper-case letters, digits or _.")


class Wallet(models.Model):
    """A customer e-wallet that receives money: LSAJA, GPAID, JOSVO."""

    code = models.CharField(max_length=16, unique=True, validators=[code_validator])
    name = models.CharField(max_length=100)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code


class Provider(models.Model):
    """A route that can credit wallets: a direct H2H link or an aggregator."""

    class Kind(models.TextChoices):
        H2H = "h2h", "Host-to-host"
        AGGREGATOR = "aggregator", "Aggregator"

    code = models.CharField(max_length=16, unique=True, validators=[code_validator])
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    priority = models.PositiveIntegerField(default=100, help_text="Breaks fee ties: lower wins.")
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["priority", "code"]

    def __str__(self) -> str:
        return self.code


class Fee(models.Model):
    """What one provider charges to credit one wallet: flat + percent of the amount (DOMAIN.md §4)."""

    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="fees")
    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="fees")
    flat_fee = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0.00"))
    percent_fee = models.DecimalField(max_digits=5, decimal_places=2, default=Decimal("0.00"))
    active = models.BooleanField(default=True)
    archived = models.BooleanField(default=False, editable=False)

    class Meta:
        ordering = ["wallet__code", "provider__priority", "provider__code"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "wallet"], condition=Q(archived=False), name="fee_unique_live_route"
            ),
            models.CheckConstraint(condition=Q(flat_fee__gte=0), name="fee_flat_nonnegative"),
            models.CheckConstraint(
                condition=Q(percent_fee__gte=0) & Q(percent_fee__lte=100), name="fee_percent_range"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider_id}→{self.wallet_id}: {self.flat_fee} + {self.percent_fee}%"


class Payout(models.Model):
    """Money owed to a customer for one transaction, and where its delivery stands (DOMAIN.md §5)."""

    class Status(models.TextChoices):
        PENDING = "PENDING"
        HELD = "HELD"
        SENDING = "SENDING"
        AWAITING_CALLBACK = "AWAITING_CALLBACK"
        UNKNOWN = "UNKNOWN"
        SUCCEEDED = "SUCCEEDED"
        FAILED = "FAILED"
        MANUAL_REVIEW = "MANUAL_REVIEW"
        CANCELLED = "CANCELLED"

    TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.MANUAL_REVIEW, Status.CANCELLED})

    transaction = models.OneToOneField("cashback.Transaction", on_delete=models.PROTECT, related_name="payout")
    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT)
    msisdn = models.CharField(max_length=15)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    flags = models.JSONField(default=list, blank=True)
    # The route: where the money is (or was last) going, and what it costs against the dearest route.
    provider = models.ForeignKey(Provider, null=True, blank=True, on_delete=models.PROTECT)
    reference = models.CharField(max_length=64, blank=True, help_text="Our client reference at the provider.")
    provider_ref = models.CharField(max_length=100, blank=True, help_text="The provider's own reference.")
    fee = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    dearest_fee = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    # Every claim by a worker increments `lease`; a worker writes its outcome only while the lease
    # is still its own, so a worker that lost the payout (crash, sweeper) can change nothing.
    lease = models.PositiveIntegerField(default=0)
    checks = models.PositiveIntegerField(default=0, help_text="Status inquiries so far.")
    next_check_at = models.DateTimeField(null=True, blank=True, db_index=True)
    retried_at = models.DateTimeField(null=True, blank=True, help_text="Last operator retry: earlier refusals no longer count.")
    created_at = models.DateTimeField(db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="payout_amount_positive")]
        indexes = [models.Index(fields=["msisdn", "created_at"], name="payout_msisdn_recent")]
        permissions = [("export_payout", "Can export payouts as CSV")]

    def __str__(self) -> str:
        return f"payout {self.pk} {self.amount} {self.status}"


class PayoutAttempt(models.Model):
    """One conversation with a provider about a payout: a send, a status inquiry or a callback.

    Written as IN_FLIGHT and committed before the request leaves, so that after a crash we
    know exactly which provider and reference to ask about.
    """

    class Kind(models.TextChoices):
        SEND = "SEND"
        INQUIRY = "INQUIRY"
        CALLBACK = "CALLBACK"

    class Outcome(models.TextChoices):
        IN_FLIGHT = "IN_FLIGHT"
        CREDITED = "CREDITED"
        PENDING = "PENDING"
        REFUSED = "REFUSED"
        UNAVAILABLE = "UNAVAILABLE"
        BREAKER_OPEN = "BREAKER_OPEN"
        UNKNOWN = "UNKNOWN"
        NOT_FOUND = "NOT_FOUND"

    payout = models.ForeignKey(Payout, on_delete=models.PROTECT, related_name="attempt_rows")
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    reference = models.CharField(max_length=64)
    outcome = models.CharField(max_length=12, choices=Outcome.choices, default=Outcome.IN_FLIGHT)
    provider_ref = models.CharField(max_length=100, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    message = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["provider", "reference"], name="attempt_provider_reference")]

    def __str__(self) -> str:
        return f"{self.kind} {self.provider_id} {self.outcome}"


class PayoutEvent(models.Model):
    """History: one row for every state change of a payout, written in the same transaction."""

    payout = models.ForeignKey(Payout, on_delete=models.PROTECT, related_name="events")
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20)
    note = models.TextField(blank=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.from_status or '∅'} → {self.to_status}"


# --- Customer emails (DOMAIN.md §6; wallets/notifications.py) -------------------------------------


class EmailTemplate(models.Model):
    """The customer email's subject and bodies, editable in the admin, with {placeholders}.

    Placeholders: wallets/notifications.py PLACEHOLDERS. An unknown placeholder or a stray brace is
    refused on save; values are never evaluated as code, and HTML-escaped in the HTML body.
    """

    class Purpose(models.TextChoices):
        PAYOUT_SUCCEEDED = "payout_succeeded", "Payout succeeded (to the customer)"

    purpose = models.CharField(max_length=32, choices=Purpose.choices, unique=True)
    subject = models.CharField(max_length=200)
    body_text = models.TextField("text body")
    body_html = models.TextField("HTML body", blank=True, help_text="Optional; sent beside the text body.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["purpose"]

    def __str__(self) -> str:
        return self.get_purpose_display()

    def clean(self) -> None:
        from wallets.notifications import template_errors  # the renderer lives with the sending code

        errors = template_errors(subject=self.subject, body_text=self.body_text, body_html=self.body_html)
        if errors:
            raise ValidationError(errors)


class EmailNotification(models.Model):
    """The customer email of one payout: one row per payout, so it is sent at most once."""

    class Status(models.TextChoices):
        PENDING = "PENDING"
        SENDING = "SENDING"
        SENT = "SENT"
        FAILED = "FAILED"

    payout = models.OneToOneField(Payout, on_delete=models.PROTECT, related_name="email_notification")
    to = models.EmailField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    subject = models.CharField(max_length=300, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)
    provider_message_id = models.CharField(max_length=200, blank=True, help_text="SES's MessageId, or our Message-ID.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        # The email sweeper's question (PENDING, untouched for hours): only PENDING rows are in it.
        indexes = [models.Index(fields=["updated_at", "id"], condition=models.Q(status="PENDING"), name="email_pending_since")]

    def __str__(self) -> str:
        return f"email for payout {self.payout_id} ({self.status})"
