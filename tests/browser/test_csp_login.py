"""Under the strict CSP the console still works: sign-in, htmx, SSE, sign-out — with no console errors."""

from __future__ import annotations

from typing import Any

import pytest

from app.runtime import Runtime
from tests.browser.conftest import open_page, sign_in, wait_js
from tests.conftest import LiveServer

pytestmark = pytest.mark.browser
PASSWORD = "browser test password"


async def test_sign_in_live_region_and_sign_out_under_csp(
    browser: Any, runtime: Runtime, live_server: LiveServer
) -> None:
    await runtime.services.users.create("tests", "b@example.com", "admin", [], PASSWORD)
    context, page, log = await open_page(browser)
    try:
        await sign_in(page, live_server.url, "b@example.com", PASSWORD)
        # The SSE stream swapped the live region (htmx + its SSE extension ran under the CSP).
        await wait_js(page, "document.querySelector('#system-status strong') !== null")
        await wait_js(page, "document.body.getAttribute('hx-headers') && document.querySelector('[sse-connect]')")
        assert await page.evaluate("typeof htmx") == "object"
        await page.click("text=Sign out")
        await page.wait_for_url(f"{live_server.url}/login", timeout=10_000)
        assert not log.errors, log.errors
        assert all(url.startswith(live_server.url) for url in log.requests), "a request left the host"
    finally:
        await context.close()
