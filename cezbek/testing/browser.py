"""A real headless browser for walkthrough tests: Debian's chromium (`/usr/bin/chromium`) driven by
Playwright. No browser is ever downloaded: `scripts/test.sh` installs Debian's package when it can,
and the tests that need it are skipped, with the reason, when it is absent.

Use from a test module:  `from cezbek.testing.browser import browser, page, screenshot  # noqa: F401`
then take `page` (a fresh context on `live_server`) and `screenshot(page, "name")`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.conf import settings

CHROMIUM = Path(os.environ.get("CEZBEK_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(settings.BASE_DIR) / "var" / "test" / "screenshots"
VIEWPORT = {"width": 1440, "height": 1000}
TIMEOUT_MS = 15_000


def chromium_missing_reason() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not CHROMIUM.exists():
        return (
            f"browser tests skipped: {CHROMIUM} is absent (scripts/test.sh installs Debian's chromium with "
            "apt-get when run as root; otherwise `apt-get install chromium`)"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "browser tests skipped: the playwright package is not installed (requirements.txt)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """One headless chromium per test module."""
    reason = chromium_missing_reason()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an asyncio loop running on this thread, and Django then refuses ORM
    # calls from it ("async context"). The tests' own database work is synchronous: allow it, for
    # this module only.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            try:
                yield chromium
            finally:
                chromium.close()


class Page:
    """A Playwright page on the live server, that remembers what it should not have seen:
    requests to any other host (the admin must work offline) and errors in the browser console."""

    def __init__(self, page, base_url: str) -> None:
        self.raw = page
        self.base_url = base_url.rstrip("/")
        self.foreign_requests: list[str] = []
        self.console_errors: list[str] = []
        own = urlsplit(self.base_url).netloc
        page.on("request", lambda r: self._request(r.url, own))
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.console_errors.append(str(e)))

    def _request(self, url: str, own: str) -> None:
        parts = urlsplit(url)
        if parts.scheme in ("http", "https", "ws", "wss") and parts.netloc != own:
            self.foreign_requests.append(url)

    def _console(self, message) -> None:
        # A browser asks for /favicon.ico on its own; the admin has none, and that 404 is no fault.
        if message.type == "error" and not (message.location or {}).get("url", "").endswith("/favicon.ico"):
            self.console_errors.append(f"{message.text} ({(message.location or {}).get('url', '')})")

    def __getattr__(self, name):
        return getattr(self.raw, name)

    def open(self, path: str):
        """Goes to a path on the live server; returns Playwright's response (status, url)."""
        response = self.raw.goto(path if path.startswith("http") else self.base_url + path)
        assert response is not None, path
        return response


@pytest.fixture
def page(browser, live_server) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT, base_url=live_server.url)
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield Page(context.new_page(), live_server.url)
    finally:
        context.close()


@pytest.fixture
def screenshot():
    """Saves a full-page PNG under var/test/screenshots/ and returns its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page: Page, name: str) -> Path:
        path = SCREENSHOTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
        page.raw.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 0
        return path

    return take
