"""Browser fixtures: Debian's Chromium driven by Playwright (``executable_path``), never a downloaded browser."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.helpers import eventually

CHROMIUM = os.environ.get("OVERWATCH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

pytestmark = pytest.mark.browser


@dataclass
class PageLog:
    """What the page said: console errors, failed and off-host requests."""

    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    """A headless Debian Chromium, one per test session (each xdist worker), shared by the browser tests: each
    test opens its own context (``open_page``) and closes it. Skipped with a clear reason when not installed.

    Starting Playwright's driver and Chromium takes ~1.4 CPU-seconds; the suite's event loop is session-wide
    (pyproject's asyncio loop scopes) so one browser can serve every test."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM} (.ci/run installs it)")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        instance = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield instance
        finally:
            await instance.close()


async def open_page(browser: Any, width: int = 1280, height: int = 800) -> tuple[Any, Any, PageLog]:
    """A fresh context and page that records console errors and every request URL."""
    context = await browser.new_context(viewport={"width": width, "height": height})
    page = await context.new_page()
    log = PageLog()
    page.on("console", lambda m: log.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: log.errors.append(str(e)))
    page.on("request", lambda r: log.requests.append(r.url))
    return context, page, log


async def sign_in(page: Any, base: str, email: str, password: str) -> None:
    """Use the real sign-in form."""
    await page.goto(f"{base}/login")
    await page.fill("#email", email)
    await page.fill("#password", password)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/", timeout=10_000)


async def wait_js(page: Any, expression: str, timeout: float = 10.0, what: str = "") -> Any:
    """Poll a JavaScript expression until truthy.

    Playwright's ``wait_for_function`` evaluates its predicate with ``eval`` inside the
    page, which our CSP (rightly) forbids; ``page.evaluate`` goes through the debugger
    protocol and is not affected, so we poll with it.
    """
    return await eventually(
        lambda: page.evaluate(expression),
        timeout=timeout,
        interval=0.1,
        what=what or expression,
        retry_on=(Exception,),  # the page may be navigating
    )
