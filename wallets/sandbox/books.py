"""The sandbox's own books: credits and per-provider idempotency records, in SQLite."""
from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from decimal import Decimal

SCHEMA = """
CREATE TABLE IF NOT EXISTS credits (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    provider TEXT NOT NULL,
    provider_ref TEXT NOT NULL,
    client_ref TEXT,
    wallet TEXT NOT NULL,
    msisdn TEXT NOT NULL,
    amount TEXT NOT NULL,
    at TEXT NOT NULL,
    stray INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS credits_provider_at ON credits (provider, at);
CREATE TABLE IF NOT EXISTS idempotency (
    provider TEXT NOT NULL,
    reference TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('credited', 'pending', 'failed')),
    body TEXT NOT NULL,
    provider_ref TEXT,
    wallet TEXT,
    msisdn TEXT,
    amount TEXT,
    callback_url TEXT,
    at TEXT NOT NULL,
    PRIMARY KEY (provider, reference)
);
"""

CREDIT_FIELDS = ("provider", "provider_ref", "client_ref", "wallet", "msisdn", "amount", "at")
CENT = Decimal("0.01")


def now_iso() -> str:
    """ISO 8601 UTC with milliseconds and a ``Z``: sorts as text, parses with fromisoformat."""
    return format_at(datetime.now(timezone.utc))


def format_at(moment: datetime) -> str:
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def money(amount: Decimal) -> str:
    return str(amount.quantize(CENT))


class Books:
    """One SQLite connection guarded by one lock; ``transaction()`` holds the lock throughout."""

    def __init__(self, path: str = ":memory:"):
        self.path = path
        self.lock = threading.RLock()
        self.epoch = 0  # bumped by reset(), so that scheduled Xenit work from before is dropped
        self._db = sqlite3.connect(path or ":memory:", check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        if path and path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    @contextmanager
    def transaction(self):
        with self.lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")

    # -- credits -------------------------------------------------------------------------------
    def book_credit(self, provider, provider_ref, client_ref, wallet, msisdn, amount: Decimal,
                    at: str, stray: bool = False) -> dict:
        credit = {"provider": provider, "provider_ref": provider_ref, "client_ref": client_ref,
                  "wallet": wallet, "msisdn": msisdn, "amount": money(amount), "at": at}
        with self.lock:
            self._db.execute(
                "INSERT INTO credits (provider, provider_ref, client_ref, wallet, msisdn, amount, at, stray)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (*[credit[f] for f in CREDIT_FIELDS], int(stray)),
            )
        return credit

    def credits(self, provider: str | None = None, date: str | None = None) -> list[dict]:
        sql = f"SELECT {', '.join(CREDIT_FIELDS)} FROM credits"
        where, args = [], []
        if provider:
            where.append("provider = ?")
            args.append(provider)
        if date:
            where.append("substr(at, 1, 10) = ?")
            args.append(date)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY at, id"
        with self.lock:
            return [dict(row) for row in self._db.execute(sql, args)]

    # -- idempotency records -------------------------------------------------------------------
    def record(self, provider: str, reference: str) -> dict | None:
        with self.lock:
            row = self._db.execute(
                "SELECT * FROM idempotency WHERE provider = ? AND reference = ?", (provider, reference)
            ).fetchone()
        return dict(row) if row else None

    def put_record(self, provider, reference, status, body: str, provider_ref=None, wallet=None,
                   msisdn=None, amount: Decimal | None = None, callback_url=None, at=None):
        with self.lock:
            self._db.execute(
                "INSERT OR REPLACE INTO idempotency"
                " (provider, reference, status, body, provider_ref, wallet, msisdn, amount, callback_url, at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (provider, reference, status, body, provider_ref, wallet, msisdn,
                 money(amount) if amount is not None else None, callback_url, at or now_iso()),
            )

    def pending_records(self) -> list[dict]:
        with self.lock:
            return [dict(r) for r in self._db.execute("SELECT * FROM idempotency WHERE status = 'pending'")]

    # -- administration ------------------------------------------------------------------------
    def reset(self):
        with self.lock:
            self.epoch += 1
            self._db.execute("DELETE FROM credits")
            self._db.execute("DELETE FROM idempotency")

    def close(self):
        with self.lock:
            self._db.close()
