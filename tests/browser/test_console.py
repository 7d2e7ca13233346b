"""The console in Debian's Chromium against a real server with the simulator running."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Any

import pytest

from app.runtime import Runtime
from core import topology
from services.schemas import EntityCreate
from tests.browser.conftest import open_page, sign_in, wait_js
from tests.conftest import QUIET_DETECTOR, LiveServer, ServerProcess, free_port
from tests.helpers import eventually, seed, telemetry
from workers.simulator import Simulator, make_fleet

pytestmark = [pytest.mark.browser, pytest.mark.slow]
PASSWORD = "browser test password"
PAGES = [
    "/",
    "/fleet",
    "/entities/ent-0",
    "/entities/cam-1",
    "/map",
    "/alerts?status=all",
    "/embed/entity/ent-0",
    "/embed/fleet?org=org1",
]


async def _fleet(runtime: Runtime) -> tuple[Simulator, asyncio.Event, asyncio.Task[None]]:
    ids = await seed(runtime, entities=2)
    await runtime.services.registry.create_entity(
        "org1", EntityCreate(entity_id="cam-1", entity_type="isr_sensor", name="Camera")
    )
    assert runtime.nc is not None
    sim = Simulator(
        runtime.nc,
        make_fleet("org1", [(i, "aircraft_multirotor") for i in ids] + [("cam-1", "isr_sensor")], (37.0, -122.0)),
        rate_hz=4,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(sim.run(stop))
    await eventually(lambda: all((runtime.services.state_cache.get(i) or {}).get("is_live") for i in ids), what="live")
    return sim, stop, task


async def test_every_page_renders_live_without_console_errors(
    browser: Any, runtime: Runtime, live_server: LiveServer
) -> None:
    sim, stop, task = await _fleet(runtime)
    await runtime.services.users.create("tests", "op@example.com", "admin", [], PASSWORD)
    context, page, log = await open_page(browser)
    try:
        await sign_in(page, live_server.url, "op@example.com", PASSWORD)
        for path in PAGES:
            await page.goto(live_server.url + path)
            await page.wait_for_load_state("load")
            await wait_js(
                page, "document.querySelector('.conn.is-live') !== null || location.pathname.startsWith('/embed')", 10
            )
            if path == "/map":
                await wait_js(page, "document.getElementById('map').dataset.loaded === '1'", 15)
                await wait_js(page, "Number(document.getElementById('map').dataset.markers) >= 2", 10)
        assert not log.errors, log.errors
        assert log.requests and all(u.startswith(live_server.url) for u in log.requests), [
            u for u in log.requests if not u.startswith(live_server.url)
        ]

        # A KV change reaches the DOM: the overview card shows the new battery level.
        await page.goto(live_server.url + "/")
        await page.wait_for_selector(".conn.is-live")
        # Paused; a publish of ent-1 the simulator had already begun is out once it has published three more
        # (the rest of that tick and the start of the next): ours comes after it.
        sim.pause("ent-1")
        before = sim.published
        await eventually(lambda: sim.published >= before + 3, what="a simulator tick after the pause")
        await runtime.js.publish(topology.telemetry_subject("org1", "ent-1"), telemetry(battery=33.0))
        await wait_js(page, "document.querySelector('#card-ent-1').textContent.includes('33%')", 10)
        sim.resume("ent-1")

        # A command sent from the entity page completes.
        await page.goto(live_server.url + "/entities/ent-0")
        await page.wait_for_selector(".conn.is-live")
        await page.select_option("#cmd", "set_mode")
        await page.fill("#cmd-mode", "LOITER")
        await page.click("form.command-form button[type=submit]")
        await wait_js(page, "document.querySelector('#command-list-ent-0 .status-completed') !== null", 30)
        assert not log.errors, log.errors
    finally:
        await context.close()
        stop.set()
        await task


XSS_NAME = "<img src=x onerror=alert(1)>"
XSS_LABEL = "<b id=pwn>boom</b><script>alert(2)</script>"


async def test_user_text_is_shown_as_text_everywhere(browser: Any, runtime: Runtime, live_server: LiveServer) -> None:
    await seed(runtime, entities=0)
    await runtime.services.registry.create_entity(
        "org1", EntityCreate(entity_id="evil", entity_type="isr_sensor", name=XSS_NAME)
    )
    await runtime.js.publish(topology.telemetry_subject("org1", "evil"), telemetry())
    detection = {
        "timestamp": "2026-01-01T00:00:00Z",
        "event_type": "detection",
        "entity_id": "evil",
        "org_id": "org1",
        "detection": {
            "track_id": "t1",
            "model_type": "m",
            "label": XSS_LABEL,
            "confidence": 0.9,
            "bbox": {"x_min": 0.1, "y_min": 0.1, "x_max": 0.3, "y_max": 0.3},
            "timestamp": "2026-01-01T00:00:00Z",
            "metadata": {"threat_level": "HIGH_THREAT"},
        },
    }
    import msgspec

    await runtime.js.publish(topology.detection_subject("org1", "evil"), msgspec.json.encode(detection))
    store = runtime.services.commands.store

    def objects(doc: dict[str, Any]) -> bool:
        doc["detections"] = {
            "objects": {
                "t1": {
                    "track_id": "t1",
                    "label": XSS_LABEL,
                    "confidence": 0.9,
                    "threat_level": "HIGH_THREAT",
                    "current_bbox": {"x_min": 0.1, "y_min": 0.1, "x_max": 0.3, "y_max": 0.3},
                }
            }
        }
        return True

    await eventually(lambda: runtime.services.state_cache.get("evil"), what="state")
    await store.merge("evil", objects)
    await eventually(lambda: _alert_count(runtime), what="threat alert")
    await runtime.services.users.create("tests", "x@example.com", "admin", [], PASSWORD)
    context, page, log = await open_page(browser)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), asyncio.ensure_future(d.dismiss())))
    try:
        await sign_in(page, live_server.url, "x@example.com", PASSWORD)
        for path in ["/", "/fleet", "/entities/evil", "/alerts?status=all", "/map", "/embed/entity/evil"]:
            await page.goto(live_server.url + path)
            await page.wait_for_load_state("load")
            await page.wait_for_timeout(700)
            created = await page.evaluate("document.querySelectorAll('img[src=\"x\"], #pwn, script:not([src])').length")
            assert created == 0, f"{path}: user text became markup"
            if path in ("/", "/fleet", "/entities/evil"):
                assert XSS_NAME in await page.inner_text("body"), f"{path}: name not shown as text"
            if path == "/entities/evil":
                assert "boom" in await page.inner_text("body")
        assert not dialogs, dialogs
    finally:
        await context.close()


async def _alert_count(runtime: Runtime) -> int:
    return int(await runtime.db.scalar("SELECT COUNT(*) FROM alerts WHERE kind = 'threat'") or 0)


async def test_page_resumes_after_a_server_restart(
    browser: Any, server_process: Callable[..., ServerProcess], tmp_path: Any
) -> None:
    port = free_port()
    env = {"OVERWATCH_ADMIN_PASSWORD": PASSWORD, "NATS_PORT": str(free_port()), **QUIET_DETECTOR}
    data = tmp_path / "data"
    server = server_process(env=env, args=["--demo"], data_dir=data, port=port)
    await server.ready()
    context, page, log = await open_page(browser)
    try:
        await sign_in(page, server.url, "admin@localhost", PASSWORD)
        await page.goto(server.url + "/fleet")
        await page.wait_for_selector(".conn.is-live")
        await page.evaluate("window.__sameDocument = true")
        assert await asyncio.to_thread(server.stop, signal.SIGTERM) == 0
        await page.wait_for_selector(".conn.is-down", timeout=10_000)
        again = server_process(env=env, args=["--demo"], data_dir=data, port=port)
        await again.ready()
        await page.wait_for_selector(".conn.is-live", timeout=20_000)
        before = await page.get_attribute("#row-demo-uav-2 td[data-ago]", "data-ago")
        await wait_js(page, f"document.querySelector('#row-demo-uav-2 td[data-ago]').dataset.ago !== '{before}'", 10)
        assert await page.evaluate("window.__sameDocument") is True, "the page reloaded"
    finally:
        await context.close()
