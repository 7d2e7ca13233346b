"""The map page: MapLibre with the offline world basemap, optional PMTiles/MBTiles, live markers and trails.

Markers arrive as JSON on the page's SSE stream (event ``map-entity``) with their
MIL-STD-2525 symbol code, trails as GeoJSON from the stored tracks. An
operator-supplied PMTiles file is served here with HTTP range requests, which is what
the PMTiles protocol reads; an MBTiles file (SQLite) is served tile by tile with a
TileJSON description, raster or vector.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import PathParameter, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage, Template

from core.topics import Topic
from services.console.cards import EntityCard
from services.console.map import MapData
from services.cot.types import AFFILIATIONS, entity_sidc
from services.hub import Update
from web.auth.guards import principal_of, requires
from web.sse.live import LiveStreams, Messages

Req = Request[Any, Any, Any]
Minutes = Annotated[float, QueryParameter(gt=0, le=24 * 60)]
TileIndex = Annotated[int, PathParameter(ge=0, le=1 << 24)]
MAX_RANGE = 4 * 1024 * 1024  # bytes served per range request


def marker(card: EntityCard, camera: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON a map marker is drawn from (with a camera's footprint and ground objects when it has them)."""
    out: dict[str, Any] = {
        "id": card.entity_id,
        "name": card.name,
        "type": card.entity_type,
        "icon": card.icon,
        "lat": card.lat,
        "lon": card.lon,
        "heading": card.heading,
        "state": card.marker_state,
        "status": card.status,
        "live": card.is_live,
        "battery": card.battery,
        "speed": card.speed,
        "alt": card.alt,
        "affiliation": card.affiliation,
        "sidc": card.sidc,
    }
    if camera is not None:
        out["camera"] = camera
    return out


# The legend: one air and one ground symbol per affiliation.
LEGEND: tuple[tuple[str, str, str], ...] = tuple(
    (affiliation, entity_sidc("aircraft_multirotor", affiliation), entity_sidc("ground_vehicle_wheeled", affiliation))
    for affiliation in AFFILIATIONS
)
TILE_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp"}


def _json_event(name: str, data: Any) -> ServerSentEventMessage:
    return ServerSentEventMessage(event=name, data=msgspec.json.encode(data).decode())


class MapController(Controller):
    """``/map``, its stream, trails and the optional PMTiles file."""

    include_in_schema = False
    guards = [requires("read")]

    @get("/map")
    async def map_page(self, request: Req, map_data: NamedDependency[MapData]) -> Template:
        """The map."""
        cards = map_data.cards(principal_of(request).visible_orgs)
        return Template(
            "pages/map.html",
            context={
                "cards": cards,
                "active": "map",
                "pmtiles": bool(map_data.pmtiles),
                "mbtiles": bool(map_data.mbtiles),
                "legend": LEGEND,
            },
        )

    @get("/events/map")
    async def map_events(
        self, request: Req, map_data: NamedDependency[MapData], live: NamedDependency[LiveStreams]
    ) -> ServerSentEvent:
        """Markers: all on (re)connect, then each change."""
        principal = principal_of(request)

        async def resync() -> Messages:
            cards = map_data.cards(principal.visible_orgs)
            return [_json_event("map-reset", [marker(c, map_data.camera(c.entity_id)) for c in cards])]

        async def render(batch: Sequence[Update]) -> Messages:
            if any(u.topic == Topic.REGISTRY for u in batch):
                return await resync()
            out: Messages = []
            for update in batch:
                card = map_data.card(update.key)
                if card is not None and principal.sees(card.org_id):
                    out.append(_json_event("map-entity", marker(card, map_data.camera(update.key))))
            return out

        return live.page_stream(request, {Topic.STATE, Topic.REGISTRY}, resync, render, max_fps=4.0)

    @get("/map/trails.geojson")
    async def trails(
        self, request: Req, map_data: NamedDependency[MapData], minutes: Minutes = 10.0
    ) -> Response[dict[str, Any]]:
        """Recent track of every visible entity as GeoJSON line strings."""
        points = await map_data.trails(principal_of(request).visible_orgs, time.time() - minutes * 60, time.time())
        lines: dict[str, list[list[float]]] = {}
        for p in points:
            lines.setdefault(p.entity_id, []).append([round(p.longitude, 6), round(p.latitude, 6)])
        features = [
            {"type": "Feature", "properties": {"id": eid}, "geometry": {"type": "LineString", "coordinates": coords}}
            for eid, coords in lines.items()
            if len(coords) > 1
        ]
        return Response({"type": "FeatureCollection", "features": features}, headers={"Cache-Control": "no-store"})

    @get("/map/tiles.pmtiles")
    async def pmtiles(self, request: Req, map_data: NamedDependency[MapData]) -> Response[bytes]:
        """The operator's PMTiles file, with HTTP range requests."""
        path = map_data.pmtiles_file()
        size = os.path.getsize(path)
        start, end = 0, min(size, MAX_RANGE) - 1
        header = request.headers.get("range", "")
        if header.startswith("bytes="):
            first, _, last = header[6:].split(",")[0].partition("-")
            try:
                start = int(first) if first else max(0, size - int(last))
                end = min(int(last) if last and first else size - 1, size - 1, start + MAX_RANGE - 1)
            except ValueError:
                start, end = 0, -1
            if start > end or start >= size:
                return Response(b"", status_code=416, headers={"Content-Range": f"bytes */{size}"})
        with path.open("rb") as fh:
            fh.seek(start)
            chunk = fh.read(end - start + 1)
        headers = {
            "Accept-Ranges": "bytes",
            "Content-Range": f"bytes {start}-{end}/{size}",
            "Cache-Control": "private, max-age=3600",
        }
        return Response(
            chunk, status_code=206 if header else 200, media_type="application/octet-stream", headers=headers
        )

    @get("/map/mbtiles.json")
    async def mbtiles_json(self, map_data: NamedDependency[MapData]) -> Response[dict[str, Any]]:
        """TileJSON of the operator's MBTiles file: format, zooms, bounds, vector layers."""
        meta = await map_data.mbtiles_metadata()
        fmt = meta.get("format", "png").lower()
        out: dict[str, Any] = {
            "tilejson": "3.0.0",
            "name": meta.get("name", "MBTiles"),
            "format": fmt,
            "vector": fmt == "pbf",
            "tiles": ["/map/mbtiles/{z}/{x}/{y}"],
            "minzoom": int(meta.get("minzoom", 0) or 0),
            "maxzoom": int(meta.get("maxzoom", 14) or 14),
            "attribution": meta.get("attribution", ""),
        }
        try:
            bounds = [float(v) for v in meta.get("bounds", "").split(",")]
            if len(bounds) == 4:
                out["bounds"] = bounds
        except ValueError:
            pass
        if fmt == "pbf":
            try:
                layers = msgspec.json.decode(meta.get("json", "{}")).get("vector_layers", [])
            except (msgspec.DecodeError, AttributeError):
                layers = []
            out["vector_layers"] = [{"id": str(layer.get("id"))} for layer in layers if isinstance(layer, dict)]
        return Response(out, headers={"Cache-Control": "private, max-age=300"})

    @get("/map/mbtiles/{z:int}/{x:int}/{y:int}")
    async def mbtiles_tile(
        self, z: TileIndex, x: TileIndex, y: TileIndex, map_data: NamedDependency[MapData]
    ) -> Response[bytes]:
        """One tile of the operator's MBTiles file (204 where the file has none)."""
        data, fmt = await map_data.mbtiles_tile(z, x, y)
        headers = {"Cache-Control": "private, max-age=3600"}
        if data is None:
            return Response(b"", status_code=204, headers=headers)
        if fmt == "pbf":
            if data[:2] == b"\x1f\x8b":
                headers["Content-Encoding"] = "gzip"  # vector tiles are usually stored gzipped
            return Response(data, media_type="application/x-protobuf", headers=headers)
        return Response(data, media_type=TILE_TYPES.get(fmt, "application/octet-stream"), headers=headers)
