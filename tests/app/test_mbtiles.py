"""MBTiles basemaps over HTTP: TileJSON for raster and vector files, tiles with TMS rows flipped,
gzipped vector tiles marked as such, 204 for a tile the file lacks, 404 without a file."""

from __future__ import annotations

import gzip
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import msgspec

from app.main import create_app
from app.runtime import Runtime


def write_mbtiles(path: Path, fmt: str, tiles: dict[tuple[int, int, int], bytes], meta: dict[str, str]) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE metadata (name TEXT, value TEXT)")
        conn.execute("CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB)")
        conn.executemany("INSERT INTO metadata VALUES (?, ?)", [("format", fmt), *meta.items()])
        conn.executemany("INSERT INTO tiles VALUES (?, ?, ?, ?)", [(z, x, y, d) for (z, x, y), d in tiles.items()])


async def _client(rt: Runtime, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(rt)), base_url="http://t", headers={"X-API-Key": key}
    )


async def test_vector_and_raster_mbtiles_are_served(make_runtime: Any, tmp_path: Path) -> None:
    vector = tmp_path / "aoo.mbtiles"
    layers = {"vector_layers": [{"id": "water", "fields": {}}, {"id": "roads", "fields": {}}]}
    # z=1, x=1, XYZ y=0 is TMS row 1 (rows count from the south).
    write_mbtiles(
        vector,
        "pbf",
        {(1, 1, 1): gzip.compress(b"\x1a\x00vector-tile")},
        {
            "minzoom": "0",
            "maxzoom": "14",
            "bounds": "-122.2,37.4,-122.1,37.5",
            "json": msgspec.json.encode(layers).decode(),
        },
    )
    rt: Runtime = await make_runtime(map_mbtiles=str(vector))
    key = (await rt.services.apikeys.create("tests", "tiles", ["read"], None)).key
    async with await _client(rt, key) as http:
        tj = (await http.get("/map/mbtiles.json")).json()
        assert tj["vector"] is True and tj["format"] == "pbf" and tj["maxzoom"] == 14
        assert tj["bounds"] == [-122.2, 37.4, -122.1, 37.5]
        assert [layer["id"] for layer in tj["vector_layers"]] == ["water", "roads"]
        assert tj["tiles"] == ["/map/mbtiles/{z}/{x}/{y}"]
        tile = await http.get("/map/mbtiles/1/1/0")
        assert tile.status_code == 200 and tile.headers["content-type"] == "application/x-protobuf"
        assert tile.headers["content-encoding"] == "gzip" and tile.content == b"\x1a\x00vector-tile"  # httpx un-gzips
        assert (await http.get("/map/mbtiles/1/0/0")).status_code == 204
        assert (await http.get("/map/mbtiles/1/2/0")).status_code == 404  # x outside zoom 1
        page = await http.get("/map")
        assert 'data-mbtiles="/map/mbtiles.json"' in page.text

    raster = tmp_path / "imagery.mbtiles"
    write_mbtiles(raster, "jpg", {(0, 0, 0): b"\xff\xd8\xff jpeg"}, {"name": "imagery"})
    rt2: Runtime = await make_runtime(map_mbtiles=str(raster))
    key2 = (await rt2.services.apikeys.create("tests", "tiles", ["read"], None)).key
    async with await _client(rt2, key2) as http:
        tj = (await http.get("/map/mbtiles.json")).json()
        assert tj["vector"] is False and tj["format"] == "jpg"
        tile = await http.get("/map/mbtiles/0/0/0")
        assert tile.headers["content-type"] == "image/jpeg" and tile.content == b"\xff\xd8\xff jpeg"


async def test_no_or_broken_mbtiles_is_a_404(make_runtime: Any, tmp_path: Path) -> None:
    broken = tmp_path / "broken.mbtiles"
    broken.write_bytes(b"not sqlite at all")
    rt: Runtime = await make_runtime(map_mbtiles=str(broken))
    key = (await rt.services.apikeys.create("tests", "tiles", ["read"], None)).key
    async with await _client(rt, key) as http:
        r = await http.get("/map/mbtiles.json")
        assert r.status_code == 404 and "MBTiles" in r.json()["detail"]
        assert (await http.get("/map/mbtiles/0/0/0")).status_code == 404
    rt2: Runtime = await make_runtime()
    key2 = (await rt2.services.apikeys.create("tests", "tiles", ["read"], None)).key
    async with await _client(rt2, key2) as http:
        assert (await http.get("/map/mbtiles.json")).status_code == 404
        assert "data-mbtiles" not in (await http.get("/map")).text
