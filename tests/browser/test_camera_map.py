"""Chromium: a camera's footprint and its tracked objects on the map, live; toggled; a click opens the camera.

The demo seed registers the gate camera with the synthetic scene's pose; the detection
worker runs on the synthetic camera in this process, so the objects on the map are the
ones in its video, projected onto the ground.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.demo import DEMO_CAMERA_ID, seed_demo
from app.runtime import Runtime
from tests.browser.conftest import open_page, sign_in, wait_js
from tests.conftest import LiveServer
from tests.helpers import eventually
from workers.detect.config import DetectSettings
from workers.detect.worker import DetectionWorker

PASSWORD = "camera-map-password-1"
pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(150)]


def _active(rt: Runtime) -> dict[str, Any]:
    """The camera's tracked objects in the state cache, by track id."""
    objects = ((rt.services.state_cache.get(DEMO_CAMERA_ID) or {}).get("detections") or {}).get("objects") or {}
    return {o["track_id"]: o for o in objects.values()}


async def _pick(page: Any, rt: Runtime) -> str:
    """A marker's track id: a bag lying there if any, else the object seen longest (least likely to leave)."""
    on_map = await page.evaluate("[...document.querySelectorAll('.track-marker')].map(n => n.dataset.trackId)")
    active = _active(rt)
    candidates = [active[t] for t in on_map if t in active] or [{"track_id": on_map[0]}]
    pick = max(candidates, key=lambda o: (o.get("label") == "bag", o.get("frame_count", 0)))
    return str(pick["track_id"])


async def test_camera_footprint_and_tracked_objects_on_the_map(browser: Any, make_runtime: Any) -> None:
    rt: Runtime = await make_runtime()
    await seed_demo(rt)
    await eventually(lambda: (rt.services.state_cache.get(DEMO_CAMERA_ID) or {}).get("camera"), what="camera pose")
    await rt.services.users.create("tests", "map@example.com", "admin", [], PASSWORD)
    settings = DetectSettings(
        org_id="demo", entity_id=DEMO_CAMERA_ID, nats_url=rt.settings.nats_url, kv_hz=4.0, threads=1, video=False
    )
    worker = DetectionWorker(settings)
    stopping = asyncio.Event()
    task = asyncio.create_task(worker.run(stopping))
    server = LiveServer(rt)
    await server.start()
    context, page, log = await open_page(browser)
    try:
        await sign_in(page, server.url, "map@example.com", PASSWORD)
        await page.goto(server.url + "/map")
        await wait_js(page, "document.getElementById('map').dataset.loaded === '1'", timeout=40, what="map loaded")
        await wait_js(page, "document.getElementById('map').dataset.footprints === '1'", timeout=20, what="footprint")
        await wait_js(page, "document.querySelectorAll('.track-marker').length > 0", timeout=40, what="object markers")
        # Each marker sits where the worker projected it (the geo in the camera's EntityState).
        drawn = await page.evaluate(
            "[...document.querySelectorAll('.track-marker')]"
            ".map(n => [n.dataset.trackId, +n.dataset.lat, +n.dataset.lon])"
        )
        objects = (rt.services.state_cache.get(DEMO_CAMERA_ID) or {})["detections"]["objects"]
        placed = {k: o["geo"] for k, o in objects.items() if "geo" in o}
        assert any(tid in placed for tid, _, _ in drawn), (drawn, list(placed))
        for tid, lat, lon in drawn:
            if tid in placed:
                assert abs(placed[tid]["latitude"] - lat) < 5e-4 and abs(placed[tid]["longitude"] - lon) < 5e-4
        # Drawn where MapLibre puts them (its marker class kept: absolutely positioned, not laid out in a row).
        assert await page.evaluate(
            "[...document.querySelectorAll('.track-marker, .map-marker')]"
            ".every(n => getComputedStyle(n).position === 'absolute')"
        )
        # Live: the markers move as the objects walk and drive.
        first = await page.evaluate("[...document.querySelectorAll('.track-marker')].map(n => n.dataset.lon).join()")
        await wait_js(
            page,
            f"[...document.querySelectorAll('.track-marker')].map(n => n.dataset.lon).join() !== {first!r}",
            timeout=20,
            what="markers moving",
        )
        # Toggling hides them (and shows them again).
        await page.click("#show-tracks")
        assert await page.evaluate("[...document.querySelectorAll('.track-marker')].every(n => n.hidden)")
        await page.click("#show-tracks")
        await wait_js(page, "[...document.querySelectorAll('.track-marker')].some(n => !n.hidden)", what="shown again")
        # A click opens the camera page with that track highlighted. The object may leave the scene before
        # the page is up (then there is no row to light): pick again from the map, at most three times.
        lit: Any = None
        for _attempt in range(3):
            tid = await _pick(page, rt)
            await page.evaluate(f"document.querySelector('.track-marker[data-track-id={tid}]').click()")
            await page.wait_for_url(f"**/entities/{DEMO_CAMERA_ID}?track=*", timeout=10_000)
            assert page.url.endswith(tid)
            try:
                lit = await wait_js(
                    page,
                    "[...document.querySelectorAll('tr.track-highlight')].map(r => r.dataset.trackId).join()",
                    timeout=10,
                    what=f"row of {tid} highlighted",
                )
            except AssertionError:
                if tid in _active(rt):
                    raise  # still tracked, yet not lit: that is the failure
                await page.goto(server.url + "/map")
                await wait_js(page, "document.querySelectorAll('.track-marker').length > 0", timeout=30, what="markers")
                continue
            assert lit == tid
            break
        assert lit, "every picked object left the scene before its camera page was up"
        assert not [e for e in log.errors if "Content Security Policy" in e], log.errors
    finally:
        await context.close()
        stopping.set()
        await asyncio.wait_for(task, 20)
        await server.stop()
