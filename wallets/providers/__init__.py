"""HTTP clients for the e-wallet providers (``../shared/PROVIDERS.md``, ``docs/providers.md``).

``get_client(code)`` builds a client from settings, one per provider per thread, so that a
``requests.Session`` keep-alive pool is reused by its thread and never shared with another.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from .base import (
    CallbackRejected,
    Credited,
    Pending,
    ProviderClient,
    ProviderError,
    Refused,
    TransferNotFound,
    Unavailable,
    Unknown,
)
from .gopaidh2h import GoPaidClient
from .josvoh2h import JosvoClient
from .lsajah2h import LinkSajaClient
from .mtrans import MtransClient
from .xenit import XenitClient

__all__ = [
    "PROVIDER_CODES",
    "CallbackRejected",
    "Credited",
    "GoPaidClient",
    "JosvoClient",
    "LinkSajaClient",
    "MtransClient",
    "Pending",
    "ProviderClient",
    "ProviderError",
    "Refused",
    "TransferNotFound",
    "Unavailable",
    "Unknown",
    "XenitClient",
    "get_client",
]

PROVIDER_CODES: tuple[str, ...] = ("LSAJAH2H", "GOPAIDH2H", "JOSVOH2H", "MTRANS", "XENIT")

_local = threading.local()


def get_client(code: str) -> ProviderClient:
    """The calling thread's client for provider ``code``, built from Django settings."""
    # Imported here so that the clients themselves never need Django.
    from django.conf import settings

    if code not in PROVIDER_CODES:
        raise ValueError(f"unknown provider code {code!r}")
    config: dict[str, Any] = settings.CEZBEK_PROVIDERS[code]
    timeouts = (
        float(settings.CEZBEK_PROVIDER_CONNECT_TIMEOUT),
        float(settings.CEZBEK_PROVIDER_READ_TIMEOUT),
    )
    # The pid guards against a client (and its sockets) inherited across a fork; the settings
    # guard against a stale client after they change (override_settings in tests).
    signature = (os.getpid(), tuple(sorted(config.items())), timeouts)
    clients: dict[str, tuple[Any, ProviderClient]] = getattr(_local, "clients", None) or {}
    _local.clients = clients
    cached = clients.get(code)
    if cached is not None and cached[0] == signature:
        return cached[1]
    if cached is not None:
        cached[1].session.close()
    client = _build(code, config, connect_timeout=timeouts[0], read_timeout=timeouts[1])
    # requests otherwise scans the process environment for proxy and CA settings on every request
    # (a quarter of a millisecond per payout); CEZBEK_PROVIDER_TRUST_ENV=1 turns that back on.
    client.session.trust_env = settings.CEZBEK_PROVIDER_TRUST_ENV
    clients[code] = (signature, client)
    return client


def _build(
    code: str, config: dict[str, Any], *, connect_timeout: float, read_timeout: float
) -> ProviderClient:
    common: dict[str, Any] = {
        "base_url": config["url"],
        "connect_timeout": connect_timeout,
        "read_timeout": read_timeout,
    }
    if code == "LSAJAH2H":
        from django.core.cache import cache

        return LinkSajaClient(
            email=config["email"], password=config["password"], token_store=cache, **common
        )
    if code == "GOPAIDH2H":
        return GoPaidClient(api_key=config["api_key"], **common)
    if code == "JOSVOH2H":
        return JosvoClient(api_key=config["api_key"], **common)
    if code == "MTRANS":
        return MtransClient(username=config["username"], password=config["password"], **common)
    return XenitClient(
        api_key=config["api_key"], callback_token=config["callback_token"], **common
    )
