"""Per-provider fault settings and the seeded dice that decide them."""
from __future__ import annotations

import json
import random
import threading
from decimal import Decimal

PROVIDER_CODES = ("LSAJAH2H", "GOPAIDH2H", "JOSVOH2H", "MTRANS", "XENIT")

# key -> (default, kind) ; kind "rate" is a probability in [0, 1], "ms" a duration >= 0.
COMMON_KEYS = {
    "latency_ms": (0, "ms"),
    "jitter_ms": (0, "ms"),
    "refuse_rate": (0.0, "rate"),
    "unavailable_rate": (0.0, "rate"),
    "unknown_rate": (0.0, "rate"),
    "timeout_rate": (0.0, "rate"),
    "timeout_ms": (10_000, "ms"),
    # Sandbox decisions (docs/providers.md): the 50/50 splits are settable so that tests can force
    # one side deterministically.
    "unknown_credit_rate": (0.5, "rate"),   # share of unknown outcomes that happen after crediting
    "unknown_drop_rate": (0.5, "rate"),     # share of unknown outcomes that drop the connection
    "timeout_credit_rate": (0.5, "rate"),   # share of timeouts that credited
}
PROVIDER_KEYS = {
    "LSAJAH2H": {"token_ttl_seconds": (900, "seconds")},
    "XENIT": {
        "pending_rate": (0.0, "rate"),
        "callback_delay_ms": (2_000, "callback_ms"),
        "callback_drop_rate": (0.0, "rate"),
        "pending_fail_rate": (0.0, "rate"),
    },
}
MAX_MS = 600_000  # ten minutes: longer than any client timeout
MAX_SECONDS = 86_400 * 366
MAX_CALLBACK_DELAY_MS = 29_000  # the contract: a PENDING top-up is finished within 30 s


class FaultError(ValueError):
    pass


def keys_for(code: str) -> dict:
    return {**COMMON_KEYS, **PROVIDER_KEYS.get(code, {})}


def defaults() -> dict:
    return {code: {k: d for k, (d, _) in keys_for(code).items()} for code in PROVIDER_CODES}


def _check_value(code: str, key: str, value, kind: str):
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise FaultError(f"{code}.{key} must be a number")
    if isinstance(value, Decimal):
        value = int(value) if value == value.to_integral_value() and kind != "rate" else float(value)
    value = float(value) if kind == "rate" else value
    if value != value or value in (float("inf"), float("-inf")):
        raise FaultError(f"{code}.{key} must be finite")
    if kind == "rate" and not 0.0 <= value <= 1.0:
        raise FaultError(f"{code}.{key} must be between 0 and 1")
    if kind in ("ms", "seconds", "callback_ms") and value < 0:
        raise FaultError(f"{code}.{key} must not be negative")
    if kind == "ms" and value > MAX_MS:
        raise FaultError(f"{code}.{key} must be at most {MAX_MS}")
    if kind == "seconds" and value > MAX_SECONDS:
        raise FaultError(f"{code}.{key} must be at most {MAX_SECONDS}")
    if kind == "callback_ms" and value > MAX_CALLBACK_DELAY_MS:
        raise FaultError(f"{code}.{key} must be at most {MAX_CALLBACK_DELAY_MS} (callbacks come within 30 s)")
    if kind in ("ms", "callback_ms") and isinstance(value, float) and value.is_integer():
        value = int(value)
    return value


def validate(update) -> dict:
    """Check a faults update ``{CODE: {key: value}}``; returns it with upper-case codes."""
    if isinstance(update, (str, bytes)):
        try:
            update = json.loads(update)
        except ValueError as exc:
            raise FaultError(f"faults are not valid JSON: {exc}") from None
    if not isinstance(update, dict):
        raise FaultError("faults must be a JSON object keyed by provider code")
    clean: dict = {}
    for raw_code, settings in update.items():
        code = str(raw_code).upper()
        if code not in PROVIDER_CODES:
            raise FaultError(f"unknown provider code {raw_code!r}")
        if not isinstance(settings, dict):
            raise FaultError(f"{code}: settings must be an object")
        allowed = keys_for(code)
        for key, value in settings.items():
            if key not in allowed:
                raise FaultError(f"{code}: unknown fault key {key!r}")
            clean.setdefault(code, {})[key] = _check_value(code, key, value, allowed[key][1])
    return clean


class Faults:
    """The current fault settings, per provider; updates merge (omitted keys keep their value)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._faults = defaults()

    def update(self, update) -> dict:
        clean = validate(update)
        with self._lock:
            for code, settings in clean.items():
                self._faults[code].update(settings)
            return json.loads(json.dumps(self._faults))

    def get(self, code: str) -> dict:
        with self._lock:
            return dict(self._faults[code])

    def all(self) -> dict:
        with self._lock:
            return json.loads(json.dumps(self._faults))

    def reset(self):
        with self._lock:
            self._faults = defaults()


class Dice:
    """The sandbox's only source of randomness: ``random.Random(seed)`` behind a lock."""

    def __init__(self, seed=None):
        self._seed = seed
        self._lock = threading.Lock()
        self._rng = random.Random(seed)

    def random(self) -> float:
        with self._lock:
            return self._rng.random()

    def chance(self, rate: float) -> bool:
        if rate <= 0:
            return False
        if rate >= 1:
            return True
        return self.random() < rate

    def uniform(self, a: float, b: float) -> float:
        with self._lock:
            return self._rng.uniform(a, b)

    def reseed(self):
        with self._lock:
            self._rng = random.Random(self._seed)
