"""Chromium: MIL-STD-2525 symbols on the map, fleet and entity pages under the strict CSP, and an
operator's MBTiles basemap (a small generated raster file) drawn under the markers."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from app.demo import DEMO_FLEET, seed_demo, start_demo_fleet
from app.runtime import Runtime
from core import topology
from services.schemas import EntityCreate
from tests.browser.conftest import open_page, sign_in, wait_js
from tests.conftest import LiveServer
from tests.helpers import eventually, telemetry
from workers.simulator import FaultConfig

PASSWORD = "symbols-password-1"
MAGENTA = (255, 0, 255)  # the generated tiles' colour (BGR = RGB for magenta)


def make_mbtiles(path: Path, max_zoom: int = 2) -> None:
    """A raster MBTiles file: every tile of zooms 0..max_zoom solid magenta (TMS rows, as the spec says)."""
    ok, png = cv2.imencode(".png", np.full((256, 256, 3), MAGENTA, np.uint8))
    assert ok
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE metadata (name TEXT, value TEXT)")
        conn.execute("CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB)")
        conn.executemany(
            "INSERT INTO metadata VALUES (?, ?)",
            [
                ("name", "test"),
                ("format", "png"),
                ("minzoom", "0"),
                ("maxzoom", str(max_zoom)),
                ("bounds", "-180,-85.0511,180,85.0511"),
                ("type", "baselayer"),
            ],
        )
        for z in range(max_zoom + 1):
            conn.executemany(
                "INSERT INTO tiles VALUES (?, ?, ?, ?)",
                [(z, x, y, png.tobytes()) for x in range(1 << z) for y in range(1 << z)],
            )


def csp_errors(errors: list[str]) -> list[str]:
    return [e for e in errors if "Content Security Policy" in e or "Refused" in e]


@pytest.mark.timeout(90)
async def test_symbols_render_under_csp_and_an_mbtiles_basemap_is_drawn(
    browser: Any, make_runtime: Any, tmp_path: Path
) -> None:
    tiles = tmp_path / "area.mbtiles"
    make_mbtiles(tiles)
    rt: Runtime = await make_runtime(map_mbtiles=str(tiles))
    await seed_demo(rt)
    start_demo_fleet(rt, FaultConfig())
    await rt.services.registry.create_entity(
        "demo",
        EntityCreate(entity_id="bogey-1", name="Bogey", entity_type="aircraft_fixed_wing", affiliation="hostile"),
    )
    await rt.js.publish(topology.telemetry_subject("demo", "bogey-1"), telemetry(lat=37.428, lon=-122.168))
    ids = [eid for eid, _n, _k in DEMO_FLEET] + ["bogey-1"]
    await eventually(lambda: all(rt.services.state_cache.get(e) for e in ids), what="entities")
    await rt.services.users.create("tests", "sym@example.com", "admin", [], PASSWORD)
    server = LiveServer(rt)
    await server.start()
    context, page, log = await open_page(browser)
    try:
        await sign_in(page, server.url, "sym@example.com", PASSWORD)
        await page.goto(server.url + "/map")
        await wait_js(page, "document.getElementById('map').dataset.loaded === '1'", what="map loaded")
        drawn = await wait_js(
            page,
            "document.querySelectorAll('.map-marker[data-symbol=\"1\"]').length >= 6 &&"
            " document.querySelectorAll('.map-marker[data-symbol=\"1\"]').length",
            timeout=15,
            what="symbol markers",
        )
        assert drawn >= len(ids)
        srcs = await page.evaluate("[...document.querySelectorAll('img.map-symbol')].map(i => i.src.slice(0, 30))")
        assert srcs and all(s.startswith("data:image/svg+xml") for s in srcs)
        hostile = await page.evaluate("document.querySelector('.map-marker[data-entity-id=\"bogey-1\"]').dataset.sidc")
        assert hostile == "SHAPMFQ--------"
        legend = await wait_js(page, "document.querySelectorAll('.legend img.sym-img').length", what="legend")
        assert legend == 10  # five affiliations × air and ground
        assert (
            await wait_js(page, "document.getElementById('map').dataset.mbtilesLayer", what="MBTiles layer") == "raster"
        )
        await wait_js(
            page,
            "performance.getEntriesByType('resource').some(r => /\\/map\\/mbtiles\\/\\d+\\/\\d+\\/\\d+$/.test(r.name))",
            what="tiles",
        )
        magenta = 0.0

        async def painted() -> bool:  # MapLibre paints the tiles it fetched on a later frame
            nonlocal magenta
            shot = cv2.imdecode(np.frombuffer(await page.locator("#map").screenshot(), np.uint8), cv2.IMREAD_COLOR)
            magenta = float(np.all(np.abs(shot.astype(int) - np.array(MAGENTA)) < 40, axis=2).mean())
            return magenta > 0.3

        try:
            await eventually(painted, timeout=10, interval=0.2, what="the MBTiles raster painted")
        except AssertionError:
            pass  # said below
        assert magenta > 0.3, f"only {magenta:.0%} of the map shows the MBTiles raster"
        assert any("/map/mbtiles/" in u for u in log.requests)

        await page.goto(server.url + "/fleet")
        rows = await wait_js(page, "document.querySelectorAll('tr img.sym-img').length", what="fleet symbols")
        assert rows >= len(ids)
        await page.goto(server.url + "/entities/bogey-1")
        header = await wait_js(
            page, "document.querySelector('.entity-header .sym[data-painted]')?.dataset.sidc", what="header"
        )
        assert header == "SHAPMFQ--------"
        links = await page.evaluate(
            "[...document.querySelectorAll('.export-links a')].map(a => a.getAttribute('href'))"
        )
        assert any(link.endswith("/track.kml?minutes=60") for link in links)
        assert not csp_errors(log.errors), log.errors
        assert all(u.startswith(server.url) or u.startswith("data:") for u in log.requests)
    finally:
        await context.close()
        await server.stop()
