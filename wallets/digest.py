"""The nightly reward digest (cezbek/schedule.py "reward-digest"): one email per customer address
summing up the payouts that reached SUCCEEDED on one day in Asia/Jakarta.

- Who: every address given with a purchase whose payout succeeded that day (the time of its
  SUCCEEDED history row, as invoices count it), compared without case: `Rina@X.id` and `rina@x.id`
  are one customer and get one email, listing every such payout, whatever the partner or MSISDN.
  Customers who gave no email are skipped.
- Never twice: a `reports.RewardDigest` row, unique on (address, day), is inserted before the email
  leaves; a second run of that day (two beats, a retry) finds it and sends nothing. A sending that
  raised is recorded FAILED with the reason and is not tried again by itself — the mail server may
  have taken it — unless the day is sent again with `retry_failed=True`, deliberately.
- Sent through Django's email API, so through whatever backend is configured (SES in production).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from itertools import groupby
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef, Subquery
from django.db.models.functions import Lower
from django.utils import timezone

from reports.models import RewardDigest
from wallets.models import Payout, PayoutEvent

logger = logging.getLogger("cezbek.wallets.digest")

DIGEST_TZ = ZoneInfo("Asia/Jakarta")
CENT = Decimal("0.01")
D = RewardDigest.Status


@dataclass(frozen=True)
class PaidLine:
    """One SUCCEEDED payout as the digest lists it."""

    succeeded_at: datetime
    kezbek_ref: str
    partner: str
    wallet: str
    msisdn: str
    amount: Decimal


@dataclass
class DigestResult:
    day: date
    sent: int = 0
    already: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"day": self.day.isoformat(), "sent": self.sent, "already": self.already, "failed": self.failed}


def digest_day_bounds(*, day: date) -> tuple[datetime, datetime]:
    """[start, end) of a day in Asia/Jakarta."""
    start = datetime.combine(day, time.min, tzinfo=DIGEST_TZ)
    return start, start + timedelta(days=1)


def digest_yesterday(*, now: datetime | None = None) -> date:
    """The day before `now`'s, in Asia/Jakarta: the day the nightly run sums up."""
    return timezone.localtime(now or timezone.now(), DIGEST_TZ).date() - timedelta(days=1)


def digest_paid(*, day: date):
    """(email, [PaidLine, …]) for every address paid on `day`, by address, each list in order of success."""
    start, end = digest_day_bounds(day=day)
    succeeded = PayoutEvent.objects.filter(payout=OuterRef("pk"), to_status=Payout.Status.SUCCEEDED)
    rows = (
        Payout.objects.filter(status=Payout.Status.SUCCEEDED)
        .filter(Exists(succeeded.filter(created_at__gte=start, created_at__lt=end)))
        .exclude(transaction__email="")
        .annotate(
            address=Lower("transaction__email"),
            succeeded_at=Subquery(succeeded.order_by("id").values("created_at")[:1]),
            kezbek_ref=F("transaction__kezbek_ref"),
            partner_name=F("transaction__partner__name"),
            wallet_name=F("wallet__name"),
        )
        .order_by("address", "succeeded_at", "id")
        .values_list("address", "succeeded_at", "kezbek_ref", "partner_name", "wallet_name", "msisdn", "amount")
    )
    for address, group in groupby(rows.iterator(chunk_size=2000), key=lambda row: row[0]):
        yield address, [PaidLine(*row[1:]) for row in group]


def reward_digest_send(*, day: date, retry_failed: bool = False) -> DigestResult:
    """Emails every customer paid on `day` one digest of that day's SUCCEEDED payouts, at most once per address."""
    result = DigestResult(day=day)
    for address, lines in digest_paid(day=day):
        total = sum((line.amount for line in lines), Decimal("0")).quantize(CENT)
        digest = _claim(address=address, day=day, payouts=len(lines), total=total, retry_failed=retry_failed)
        if digest is None:
            result.already += 1
            continue
        try:
            _message(address=address, day=day, lines=lines, total=total).send()
        except Exception as error:  # noqa: BLE001 — any backend's error (SMTP, SES): record it, go on with the others
            reason = f"{type(error).__name__}: {error}"[:300]
            RewardDigest.objects.filter(pk=digest.pk).update(status=D.FAILED, error=reason)
            logger.warning("reward digest %s for %s: sending failed: %s", day, digest.pk, reason)
            result.failed += 1
            result.failures.append(reason)
            continue
        RewardDigest.objects.filter(pk=digest.pk).update(status=D.SENT, sent_at=timezone.now(), error="")
        result.sent += 1
    logger.info("reward digest %s: %s", day, result.as_dict())
    return result


def _claim(*, address: str, day: date, payouts: int, total: Decimal, retry_failed: bool) -> RewardDigest | None:
    """The digest row this run may send, inserted first; None when the address already has one for the day."""
    try:
        with transaction.atomic():
            return RewardDigest.objects.create(email=address, day=day, status=D.SENDING, payouts=payouts, total=total)
    except IntegrityError:
        pass
    if retry_failed:
        taken = RewardDigest.objects.filter(email=address, day=day, status=D.FAILED).update(
            status=D.SENDING, payouts=payouts, total=total, attempts=F("attempts") + 1, error=""
        )
        if taken:
            return RewardDigest.objects.get(email=address, day=day)
    return None


def _money(amount: Decimal) -> str:
    return f"IDR {amount:,.2f}"


def _masked(msisdn: str) -> str:
    return msisdn[:5] + "*" * max(len(msisdn) - 8, 0) + msisdn[-3:] if len(msisdn) > 8 else msisdn


def _message(*, address: str, day: date, lines: list[PaidLine], total: Decimal) -> EmailMessage:
    when = f"{day.day} {day:%B %Y}"
    count = f"{len(lines)} reward{'s' if len(lines) != 1 else ''}"
    body = [
        "Hello,",
        "",
        f"On {when} Kezbek paid {count} into your e-wallet, {_money(total)} in total:",
        "",
    ]
    for line in lines:
        at = timezone.localtime(line.succeeded_at, DIGEST_TZ)
        body.append(f"  {at:%H:%M}  {_money(line.amount):>18}  {line.wallet} {_masked(line.msisdn)}  from {line.partner}  ({line.kezbek_ref})")
    body += [
        "",
        f"  Total {_money(total)}",
        "",
        "Times are Western Indonesian Time (WIB). This is a summary: the money is already in your e-wallet.",
        "",
        "Kezbek",
    ]
    return EmailMessage(
        subject=f"Your Kezbek rewards of {when}: {_money(total)}",
        body="\n".join(body) + "\n",
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[address],
    )
