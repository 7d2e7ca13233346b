"""``serve --demo`` with its detection worker, seen by an operator in Chromium.

The demo camera's page shows live MJPEG with boxes drawn in, tracked objects update,
the weapon-like object raises a HIGH threat alert with a reason, and the alert clears
after the object has left the view.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from tests.browser.conftest import open_page, sign_in, wait_js
from tests.conftest import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(150)]

PASSWORD = "detection demo password"
CAMERA = "demo-cam-1"


async def test_demo_camera_page_shows_video_detections_and_a_threat_that_clears(
    browser: Any, server_process: Callable[..., ServerProcess]
) -> None:
    server = server_process(env={"OVERWATCH_ADMIN_PASSWORD": PASSWORD}, args=["--demo"])
    await server.ready()
    context, page, log = await open_page(browser)
    try:
        await sign_in(page, server.url, "admin@localhost", PASSWORD)
        await page.goto(f"{server.url}/entities/{CAMERA}")
        # Live MJPEG: the image decodes a 640×480 frame (the stream starts with the first frame).
        await wait_js(
            page,
            "document.querySelector('img.video-img') && document.querySelector('img.video-img').naturalWidth === 640",
            timeout=30,
            what="MJPEG frame in the page",
        )
        # Objects tracked by the detector appear in the live table.
        await wait_js(
            page,
            f"document.querySelectorAll('#tracked-objects-{CAMERA} tbody tr').length > 0",
            timeout=20,
            what="tracked objects",
        )
        first_rows = await page.inner_text(f"#tracked-objects-{CAMERA}")
        # The weapon walks in (second 4 of the detector's scene): HIGH threat with a reason.
        await wait_js(
            page,
            f"[...document.querySelectorAll('#tracked-objects-{CAMERA} tbody tr')]"
            ".some(r => r.textContent.includes('weapon') && r.textContent.includes('HIGH THREAT'))",
            timeout=40,
            what="weapon graded HIGH THREAT",
        )
        await wait_js(
            page,
            f"[...document.querySelectorAll('#entity-alerts-{CAMERA} li')]"
            ".some(li => li.textContent.includes('weapon') && li.textContent.includes('active'))",
            timeout=15,
            what="active threat alert",
        )
        alert = await page.inner_text(f"#entity-alerts-{CAMERA}")
        assert "High threat: weapon detected" in alert, alert
        assert int((await page.inner_text("#nav-alerts")).strip() or "0") >= 1
        # ... and walks out: the object leaves the table and the alert clears by itself.
        await wait_js(
            page,
            f"![...document.querySelectorAll('#tracked-objects-{CAMERA} tbody tr')]"
            ".some(r => r.textContent.includes('weapon'))",
            timeout=60,
            what="weapon gone from the tracked objects",
        )
        await wait_js(
            page,
            f"[...document.querySelectorAll('#entity-alerts-{CAMERA} li')]"
            ".some(li => li.textContent.includes('weapon') && li.textContent.includes('cleared'))",
            timeout=15,
            what="threat alert cleared",
        )
        assert first_rows != await page.inner_text(f"#tracked-objects-{CAMERA}"), "the object table never changed"
        assert not log.errors, log.errors
    finally:
        await context.close()
    assert await asyncio.to_thread(server.stop) == 0
