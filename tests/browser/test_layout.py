"""Tablet and desktop layouts: no sideways scrolling, touch-sized controls, pages readable without JavaScript."""

from __future__ import annotations

from typing import Any

import pytest

from app.runtime import Runtime
from core import topology
from tests.browser.conftest import open_page, sign_in
from tests.conftest import LiveServer
from tests.helpers import eventually, seed, telemetry

pytestmark = [pytest.mark.browser, pytest.mark.slow]
PASSWORD = "layout test password"
PAGES = ["/", "/fleet", "/entities/ent-0", "/map", "/alerts", "/account", "/admin/users"]

# Interactive elements a finger must hit: every visible one, wherever it is, except
# links inside running text and table cells (they sit next to a larger row target).
TARGETS_JS = """() => {
  const bad = [];
  for (const el of document.querySelectorAll('button, select, input:not([type=hidden]), nav a, .button')) {
    // A checkbox is hit through its label.
    const box = (el.type === 'checkbox' || el.type === 'radio') && el.closest('label') ? el.closest('label') : el;
    const r = box.getBoundingClientRect();
    if (r.width === 0 || r.height === 0 || getComputedStyle(el).visibility === 'hidden') continue;
    if (el.closest('td')) continue;
    if (r.height < 44 || (el.tagName !== 'INPUT' && el.tagName !== 'SELECT' && r.width < 44)) {
      const label = (el.textContent || el.name || '').trim().slice(0, 30);
      const size = `${Math.round(r.width)}x${Math.round(r.height)}`;
      bad.push(`${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''} "${label}" ${size}`);
    }
  }
  return bad;
}"""


async def _live(runtime: Runtime) -> None:
    ids = await seed(runtime, entities=2)
    for entity_id in ids:
        await runtime.js.publish(topology.telemetry_subject("org1", entity_id), telemetry(battery=55.0))
    for entity_id in ids:
        await eventually(lambda e=entity_id: (runtime.services.state_cache.get(e) or {}).get("is_live"), what="live")
    await runtime.services.users.create("tests", "lay@example.com", "admin", [], PASSWORD)


@pytest.mark.parametrize("size", [(768, 1024), (1280, 800), (1024, 768)])
async def test_pages_fit_and_controls_are_touch_sized(
    browser: Any, runtime: Runtime, live_server: LiveServer, size: tuple[int, int]
) -> None:
    await _live(runtime)
    context, page, log = await open_page(browser, *size)
    problems: list[str] = []
    try:
        await sign_in(page, live_server.url, "lay@example.com", PASSWORD)
        for path in PAGES:
            await page.goto(live_server.url + path)
            await page.wait_for_load_state("load")
            overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            if overflow > 0:
                problems.append(f"{path} at {size}: scrolls sideways by {overflow} px")
            small = await page.evaluate(TARGETS_JS)
            problems += [f"{path} at {size}: small target {t}" for t in small]
        assert not log.errors, log.errors
    finally:
        await context.close()
    assert not problems, "\n".join(problems)


async def test_read_only_pages_render_without_javascript(
    browser: Any, runtime: Runtime, live_server: LiveServer
) -> None:
    await _live(runtime)
    context = await browser.new_context(java_script_enabled=False, viewport={"width": 768, "height": 1024})
    page = await context.new_page()
    try:
        await page.goto(f"{live_server.url}/login")
        await page.fill("#email", "lay@example.com")
        await page.fill("#password", PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{live_server.url}/", timeout=10_000)
        assert await page.locator("#card-ent-0").count() == 1
        assert "55%" in (await page.locator("#card-ent-0").text_content() or "")
        await page.goto(f"{live_server.url}/fleet?sort=-battery")
        assert await page.locator("#fleet-table tbody tr").count() == 2
        await page.goto(f"{live_server.url}/entities/ent-0")
        assert "ent-0" in (await page.content())
        assert await page.locator("#entity-telemetry-ent-0").count() == 1
        await page.goto(f"{live_server.url}/alerts?status=all")
        assert await page.locator("h1").count() == 1
    finally:
        await context.close()
