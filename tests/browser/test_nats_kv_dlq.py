"""The key-value browser and the dead-letter page in Debian's Chromium."""

from __future__ import annotations

from typing import Any

import pytest

from app.runtime import Runtime
from core import topology
from tests.browser.conftest import open_page, sign_in, wait_js
from tests.conftest import LiveServer
from tests.helpers import dlq, eventually, seed

pytestmark = [pytest.mark.browser, pytest.mark.slow]
PASSWORD = "browser test password"
STATE = topology.BUCKET_STATE


@pytest.mark.timeout(120)
async def test_kv_keys_history_diff_and_dlq_replay(browser: Any, runtime: Runtime, live_server: LiveServer) -> None:
    await seed(runtime, "org1", 1, prefix="ent")
    await runtime.kv_state.put("ent-0.notes", b'{"mode": "patrol", "waypoints": 3}')
    await runtime.kv_state.put("ent-0.notes", b'{"mode": "return", "waypoints": 3}')
    await runtime.js.publish(topology.telemetry_subject("org1", "ent-0"), b"this is not json")
    letter = (await eventually(lambda: dlq(runtime.js), 15, what="dead letter"))[0]
    await runtime.services.users.create("tests", "kv@example.com", "admin", [], PASSWORD)
    context, page, log = await open_page(browser)
    try:
        await sign_in(page, live_server.url, "kv@example.com", PASSWORD)
        # Buckets, then the state bucket's keys filtered to the entity's sub-keys.
        await page.goto(live_server.url + "/nats/kv")
        await page.click(f"#nats-kv-buckets a[href='/nats/kv/{STATE}']")
        await page.wait_for_selector("#kv-key-table")
        await page.fill("#kv-filter", "ent-0.*")
        await page.click("#nats-kv-keys button[type=submit]")
        await page.wait_for_selector("#kv-key-table a:has-text('ent-0.notes')")
        assert "ent-0.mavlink" not in await page.inner_text("#kv-key-table")
        await page.click("#kv-key-table a:has-text('ent-0.notes')")
        # The key: latest value, two revisions, and the diff of the latest write.
        await page.wait_for_selector("#kv-history-table")
        assert '"mode": "return"' in await page.inner_text("#kv-value-body")
        assert await page.locator("#kv-history-table tbody tr").count() == 2
        diff = await page.inner_text("#kv-diff-lines")
        assert '-  "mode": "patrol",' in diff and '+  "mode": "return",' in diff
        # Live: a third write shows up without a reload.
        await wait_js(page, "document.querySelector('#nats-kv-value') !== null", 5)
        await page.wait_for_timeout(1000)
        await runtime.kv_state.put("ent-0.notes", b'{"mode": "loiter", "waypoints": 4}')
        await wait_js(page, "document.querySelector('#kv-value-body').textContent.includes('loiter')", 10)
        assert await page.locator("#kv-history-table tbody tr").count() == 3
        # Dead letters: listed with reason and subject, replayed from the page.
        await page.goto(live_server.url + "/nats/dlq")
        row = page.locator(f"#dlq-{letter.seq}")
        assert topology.telemetry_subject("org1", "ent-0") in await row.inner_text()
        await row.locator("input[name=seq]").check()
        await page.click("#dlq-replay-selected")
        await page.wait_for_selector("#dlq-result")
        assert "1 replayed" in await page.inner_text("#dlq-result")
        assert await page.locator(f"#dlq-{letter.seq}").count() == 0
        assert not log.errors, log.errors
        assert all(u.startswith(live_server.url) for u in log.requests)
    finally:
        await context.close()
