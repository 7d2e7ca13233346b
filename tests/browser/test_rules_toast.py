"""A rule firing shows a toast and bumps the alert badge on an open page, live over SSE."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.runtime import Runtime
from core import topology
from db import rules as rules_db
from services.alerts.model import RuleForm, validate
from services.audit import Actor
from tests.browser.conftest import open_page, sign_in, wait_js
from tests.conftest import LiveServer
from tests.helpers import eventually, seed, telemetry
from workers.simulator import FaultConfig, Simulator, make_fleet

pytestmark = [pytest.mark.browser, pytest.mark.slow]
PASSWORD = "browser toast password"


@pytest.mark.timeout(150)
async def test_offline_rule_toasts_open_pages_of_users_who_see_it(
    browser: Any, runtime: Runtime, live_server: LiveServer
) -> None:
    ids = await seed(runtime, entities=2)
    (o2,) = await seed(runtime, org_id="org2", entities=1, prefix="o2")
    assert runtime.nc is not None
    sim = Simulator(
        runtime.nc, make_fleet("org1", [(i, "aircraft_multirotor") for i in ids], (37.0, -122.0)), 4, FaultConfig()
    )
    stop = asyncio.Event()
    task = asyncio.create_task(sim.run(stop))
    users = runtime.services.users
    await users.create("tests", "op@example.com", "operator", ["org1"], PASSWORD)
    await users.create("tests", "other@example.com", "viewer", ["org2"], PASSWORD)
    cache = runtime.services.state_cache
    await eventually(lambda: all((cache.get(i) or {}).get("is_live") for i in ids), what="fleet live")
    await runtime.js.publish(topology.telemetry_subject("org2", o2), telemetry(battery=50.0))
    await eventually(lambda: (cache.get(o2) or {}).get("is_live"), what="org2's entity live")
    ctx1, page, log = await open_page(browser)
    ctx2, other, _log2 = await open_page(browser)
    try:
        await sign_in(page, live_server.url, "op@example.com", PASSWORD)
        await sign_in(other, live_server.url, "other@example.com", PASSWORD)
        await page.goto(live_server.url + "/fleet")
        await other.goto(live_server.url + "/fleet")
        for p in (page, other):
            await wait_js(p, "document.getElementById('conn').classList.contains('is-live')", what="stream open")
        assert await page.evaluate("document.querySelectorAll('#toasts [data-toast]').length") == 0
        form = RuleForm(name="Lost link", kind="offline", threshold=5, severity="high", enabled="on", org_id="org1")
        await runtime.services.rules.create(Actor("tests"), validate(form))

        sim.pause("ent-0")
        text = await wait_js(
            page, "(document.querySelector('#toasts [data-toast]') || {}).textContent", timeout=15, what="toast"
        )
        assert "Lost link" in text and "ent 0" in text and "offline > 5 s" in text
        badge = await wait_js(page, "document.getElementById('nav-alerts').textContent.trim()", what="badge")
        assert int(badge) >= 1
        # A later update org2 does see reaches its page after anything sent to it before (one ordered stream).
        await runtime.js.publish(topology.telemetry_subject("org2", o2), telemetry(battery=42.0))
        row = f"(document.getElementById('row-{o2}') || {{textContent: ''}})"
        await wait_js(other, f"{row}.textContent.includes('42%')", what="org2's later update")
        assert await other.evaluate("document.querySelectorAll('#toasts [data-toast]').length") == 0, "org2 sees it"

        await page.click("#toasts [data-toast-close]")
        await wait_js(page, "document.querySelectorAll('#toasts [data-toast]').length === 0", what="dismissed")

        sim.resume("ent-0")

        async def resolved() -> bool:
            return not await rules_db.open_events(runtime.db)

        await eventually(resolved, timeout=10, what="rule resolved")
        assert not [e for e in log.errors if "Content Security Policy" in e or "Refused" in e], log.errors
    finally:
        await ctx1.close()
        await ctx2.close()
        stop.set()
        await asyncio.wait_for(task, 10)
