from django.core.validators import RegexValidator
from django.db import models

partner_code_validator = RegexValidator(r"^[A-Z0-9_]{2,32}$", "2 to 32 upper-case letters, digits or _.")


class Partner(models.Model):
    """A B2B company whose systems call the partner API."""

    code = models.CharField(max_length=32, unique=True, validators=[partner_code_validator])
    name = models.CharField(max_length=200)
    email = models.EmailField(blank=True)
    msisdn = models.CharField(max_length=15, blank=True)
    officer = models.CharField(max_length=200, blank=True)
    address = models.TextField(blank=True)
    webhook_url = models.URLField(blank=True, null=True)
    rate_limit_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Requests a minute; empty = the global CEZBEK_RATE_LIMIT_PER_MINUTE."
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
