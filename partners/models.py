import secrets
from pathlib import PurePosixPath

from django.core.exceptions import ValidationError
from django.core.validators import FileExtensionValidator, RegexValidator
from django.db import models

partner_code_validator = RegexValidator(r"^[A-Z0-9_]{2,32}$", "2 to 32 upper-case letters, digits or _.")
# The stored form, as `cezbek_config import` takes it (62…, 10 to 15 digits).
msisdn_validator = RegexValidator(r"^628[0-9]{7,12}$", 'A mobile number in the 62… form, e.g. "628111000001".')

LOGO_EXTENSIONS = ["png", "jpg", "jpeg", "webp"]
LOGO_MAX_BYTES = 1024 * 1024


def validate_logo_size(file) -> None:
    if file.size > LOGO_MAX_BYTES:
        raise ValidationError(
            f"A logo may be at most {LOGO_MAX_BYTES // 1024} KB; this file is {file.size // 1024} KB."
        )


def partner_logo_path(instance: "Partner", filename: str) -> str:
    """`partners/<CODE>/logo-<random>.<ext>`: a new name per upload, so no cache or CDN serves an old logo."""
    extension = PurePosixPath(filename).suffix.lower()
    return f"partners/{instance.code}/logo-{secrets.token_hex(8)}{extension}"


class Partner(models.Model):
    """A B2B company whose systems call the partner API."""

    code = models.CharField(max_length=32, unique=True, validators=[partner_code_validator])
    name = models.CharField(max_length=200)
    email = models.EmailField(blank=True)
    msisdn = models.CharField(max_length=15, blank=True, validators=[msisdn_validator])
    officer = models.CharField(max_length=200, blank=True)
    address = models.TextField(blank=True)
    webhook_url = models.URLField(blank=True, null=True)
    rate_limit_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Requests a minute; empty = the global CEZBEK_RATE_LIMIT_PER_MINUTE."
    )
    logo = models.ImageField(
        upload_to=partner_logo_path,
        blank=True,
        validators=[FileExtensionValidator(LOGO_EXTENSIONS), validate_logo_size],
        help_text="PNG, JPEG or WebP, at most 1 MB. Stored in the default file storage (S3 in production).",
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} ({self.name})"

    # A signed request authenticates as its partner (request.user in the API).
    is_authenticated = True


class PartnerCredential(models.Model):
    """A key id (public) and its secret (encrypted at rest). Several may be live during rotation."""

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="credentials")
    key_id = models.CharField(max_length=40, unique=True)
    secret_encrypted = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["partner", "-created_at"]

    def __str__(self) -> str:
        return f"{self.key_prefix}… ({'revoked' if self.revoked_at else 'live'})"

    @property
    def key_prefix(self) -> str:
        """What logs and the admin may show of a key id: never the whole key."""
        return self.key_id[:8]


# --- Webhooks to partners (API.md "Webhooks to partners", DOMAIN.md §6; partners/webhooks.py) ---------


class WebhookDelivery(models.Model):
    """One event about one payout, to be POSTed (signed) to its partner's webhook URL, with its retries.

    One row per (payout, event): a task run twice finds the row and sends nothing more. The body is
    fixed when the row is recorded (the payout as it was at that event); `sent_at` is stamped per attempt.
    """

    class Event(models.TextChoices):
        SUCCEEDED = "payout.succeeded"
        FAILED = "payout.failed"
        CANCELLED = "payout.cancelled"

    class State(models.TextChoices):
        PENDING = "PENDING", "Pending (first attempt or a retry due)"
        DELIVERED = "DELIVERED", "Delivered (2xx)"
        STOPPED = "STOPPED", "Stopped (refused by the partner)"
        GAVE_UP = "GAVE_UP", "Gave up (24 h of retries)"
        SUPERSEDED = "SUPERSEDED", "Superseded (a later event of the payout)"

    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="webhook_deliveries")
    payout = models.ForeignKey("wallets.Payout", on_delete=models.PROTECT, related_name="webhook_deliveries")
    event = models.CharField(max_length=32, choices=Event.choices)
    kezbek_ref = models.CharField(max_length=64, db_index=True)
    payload = models.TextField(help_text="The JSON body without sent_at, as recorded for this event.")
    state = models.CharField(max_length=12, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    first_attempt_at = models.DateTimeField(null=True, blank=True, help_text="Start of the 24 h retry window.")
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="When the next attempt is due (a claim pushes it past the attempt's timeouts)."
    )
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "webhook deliveries"
        constraints = [models.UniqueConstraint(fields=["payout", "event"], name="webhook_one_delivery_per_event")]
        indexes = [
            models.Index(
                fields=["next_attempt_at"], condition=models.Q(state="PENDING"), name="webhook_due"
            )
        ]

    def __str__(self) -> str:
        return f"{self.event} {self.kezbek_ref} → {self.partner_id} ({self.state})"


class WebhookAttempt(models.Model):
    """One POST of a delivery (or one that could not leave): what answered, and how fast."""

    class Outcome(models.TextChoices):
        DELIVERED = "DELIVERED"
        RETRY = "RETRY"
        STOPPED = "STOPPED"
        GAVE_UP = "GAVE_UP"

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_rows")
    number = models.PositiveIntegerField()
    url = models.CharField(max_length=500, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"attempt {self.number}: {self.status_code or self.error or '—'} ({self.outcome})"
