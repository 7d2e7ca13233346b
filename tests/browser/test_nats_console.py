"""The NATS console in Debian's Chromium: streams, a stream, the message browser and its live tail."""

from __future__ import annotations

from typing import Any

import pytest
from nats.js.api import StreamConfig

from app.runtime import Runtime
from tests.browser.conftest import open_page, sign_in, wait_js
from tests.conftest import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]
PASSWORD = "browser test password"


@pytest.mark.timeout(120)
async def test_streams_detail_browser_and_live_tail(browser: Any, runtime: Runtime, live_server: LiveServer) -> None:
    await runtime.js.add_stream(StreamConfig(name="TAILTEST", subjects=["tailtest.>"]))
    for i in range(30):
        await runtime.js.publish(f"tailtest.s{i % 3}", f'{{"n": {i}}}'.encode())
    await runtime.services.users.create("tests", "nats@example.com", "admin", [], PASSWORD)
    context, page, log = await open_page(browser)
    try:
        await sign_in(page, live_server.url, "nats@example.com", PASSWORD)
        await page.goto(live_server.url + "/nats/streams")
        await page.wait_for_selector("#nats-streams a[href='/nats/streams/TAILTEST']")
        await page.click("#nats-streams a[href='/nats/streams/TAILTEST']")
        await page.wait_for_selector("#nats-subject-tree")
        assert "tailtest" in await page.inner_text("#nats-subject-tree")
        await page.click("a:has-text('Browse messages')")
        await page.wait_for_selector("#nats-message-table")
        assert "/nats/messages/TAILTEST/30" in await page.inner_html("#nats-message-table")
        # The tail's stream is open once its status region has been swapped by the server.
        await wait_js(page, "document.querySelector('#nats-tail-status') !== null", 10)
        await wait_js(page, "document.querySelector('#nats-tail').getAttribute('sse-connect') !== null", 5)
        await page.wait_for_timeout(1000)
        await runtime.js.publish("tailtest.live", b'{"hello": "from the test"}')
        await wait_js(page, "document.querySelector('#tail-rows').textContent.includes('from the test')", 10)
        assert "tailtest.live" in await page.inner_text("#tail-rows")
        # Paused: new rows are held back.
        await page.click("#tail-pause")
        await runtime.js.publish("tailtest.live", b'{"hidden": "while paused"}')
        await page.wait_for_timeout(1000)
        assert "while paused" not in await page.inner_text("#tail-rows")
        # A message's page: pretty JSON and a copy button.
        await page.goto(live_server.url + "/nats/messages/TAILTEST/1")
        assert '"n": 0' in await page.inner_text("#message-body")
        assert not log.errors, log.errors
        assert all(u.startswith(live_server.url) for u in log.requests)
    finally:
        await context.close()
