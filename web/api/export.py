"""``/api/v1/export/picture.{geojson,kml}`` and ``…/entities/{id}/track.{geojson,kml}``.

The current picture (every visible entity where it is now) and the stored tracks over
a time window, for the tools analysts open them in. GeoJSON follows RFC 7946 (WGS 84
longitude, latitude[, altitude]; no ``crs``; a line has at least two positions; an
entity without a position is a feature with ``null`` geometry). KML is OGC KML 2.2: a
folder of entity placemarks (styled by affiliation, with a ``TimeStamp``) and a folder
of track line strings (with a ``TimeSpan``).

The window is ``minutes`` back from now (default 60) or ``start``/``end`` (ISO 8601),
at most seven days. Same authentication and organisation filtering as every API route.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any
from xml.etree import ElementTree as ET

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from db.tracks import TrackPoint
from services.console.cards import EntityCard
from services.cot.types import cot_type
from services.tracks import Picture, TrackService
from web.api.params import ERRORS, IdPath
from web.auth.guards import authorize, principal_of, requires

Req = Request[Any, Any, Any]
Minutes = Annotated[float | None, QueryParameter(gt=0, le=7 * 24 * 60, description="window: minutes back from now")]
When = Annotated[str | None, QueryParameter(max_length=40, description="window start/end, ISO 8601")]
MAX_POINTS = 500_000
GEOJSON = "application/geo+json"
KML = "application/vnd.google-earth.kml+xml"
KML_NS = "http://www.opengis.net/kml/2.2"
# KML colours are aabbggrr: the 2525 frame colours (friend blue, hostile red, neutral green, unknown yellow).
AFFILIATION_COLOURS = {
    "friend": "ffffcc80",
    "hostile": "ff8080ff",
    "neutral": "ff80ffaa",
    "unknown": "ff80ffff",
    "pending": "ff80ffff",
}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _position(card: EntityCard) -> list[float] | None:
    if card.lat is None or card.lon is None:
        return None
    pos = [round(card.lon, 7), round(card.lat, 7)]
    if card.alt is not None:
        pos.append(round(card.alt, 2))
    return pos


def _properties(card: EntityCard) -> dict[str, Any]:
    return {
        "kind": "entity",
        "entity_id": card.entity_id,
        "name": card.name,
        "org_id": card.org_id,
        "entity_type": card.entity_type,
        "affiliation": card.affiliation,
        "sidc": card.sidc,
        "cot_type": cot_type(card.entity_type, card.affiliation),
        "status": card.status,
        "is_live": card.is_live,
        "last_seen": _iso(card.last_seen_ms / 1000) if card.last_seen_ms else None,
        "battery": card.battery,
        "speed": card.speed,
        "heading": card.heading,
    }


def _tracks(points: Sequence[TrackPoint]) -> dict[str, list[TrackPoint]]:
    out: dict[str, list[TrackPoint]] = {}
    for p in points:
        out.setdefault(p.entity_id, []).append(p)
    return out


def geojson(pic: Picture) -> dict[str, Any]:
    """The picture and its tracks as an RFC 7946 FeatureCollection."""
    cards, points, t0, t1 = pic.cards, pic.points, pic.start, pic.end
    names = {c.entity_id: c.name for c in cards}
    features: list[dict[str, Any]] = []
    for card in cards:
        pos = _position(card)
        features.append(
            {
                "type": "Feature",
                "id": card.entity_id,
                "geometry": {"type": "Point", "coordinates": pos} if pos else None,
                "properties": _properties(card),
            }
        )
    for entity_id, track in _tracks(points).items():
        coords = [[round(p.longitude, 7), round(p.latitude, 7)] for p in track]
        if len(coords) < 2:
            continue  # RFC 7946: a LineString has two or more positions
        features.append(
            {
                "type": "Feature",
                "id": f"{entity_id}/track",
                "geometry": {"type": "LineString", "coordinates": coords},
                "properties": {
                    "kind": "track",
                    "entity_id": entity_id,
                    "name": names.get(entity_id, entity_id),
                    "start": _iso(track[0].ts),
                    "end": _iso(track[-1].ts),
                    "times": [_iso(p.ts) for p in track],
                },
            }
        )
    return {
        "type": "FeatureCollection",
        "features": features,
        "properties": {"window_start": _iso(t0), "window_end": _iso(t1), "generated": _iso(time.time())},
    }


def kml(pic: Picture, title: str) -> bytes:
    """The picture and its tracks as a KML 2.2 document."""
    cards, points, t0, t1 = pic.cards, pic.points, pic.start, pic.end
    ET.register_namespace("", KML_NS)

    def el(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
        child = ET.SubElement(parent, f"{{{KML_NS}}}{tag}")
        if text is not None:
            child.text = text
        return child

    root = ET.Element(f"{{{KML_NS}}}kml")
    doc = el(root, "Document")
    el(doc, "name", title)
    el(doc, "description", f"Constellation Overwatch, {_iso(t0)} to {_iso(t1)}")
    for affiliation, colour in AFFILIATION_COLOURS.items():
        style = el(doc, "Style")
        style.set("id", affiliation)
        icon_style = el(style, "IconStyle")
        el(icon_style, "color", colour)
        line_style = el(style, "LineStyle")
        el(line_style, "color", colour)
        el(line_style, "width", "2")
    entities = el(doc, "Folder")
    el(entities, "name", "Entities")
    for card in cards:
        mark = el(entities, "Placemark")
        el(mark, "name", card.name)
        el(mark, "description", f"{card.entity_type.replace('_', ' ')} · {card.affiliation} · {card.status}")
        if card.last_seen_ms:
            stamp = el(mark, "TimeStamp")
            el(stamp, "when", _iso(card.last_seen_ms / 1000))
        el(mark, "styleUrl", f"#{card.affiliation}")
        extended = el(mark, "ExtendedData")
        for key, value in _properties(card).items():
            if value is None:
                continue
            data = el(extended, "Data")
            data.set("name", key)
            el(data, "value", str(value).lower() if isinstance(value, bool) else str(value))
        pos = _position(card)
        if pos:
            point = el(mark, "Point")
            if len(pos) == 3:
                el(point, "altitudeMode", "absolute")
            el(point, "coordinates", ",".join(f"{v}" for v in pos))
    affiliations = {c.entity_id: c.affiliation for c in cards}
    names = {c.entity_id: c.name for c in cards}
    tracks = el(doc, "Folder")
    el(tracks, "name", "Tracks")
    for entity_id, track in _tracks(points).items():
        if len(track) < 2:
            continue
        mark = el(tracks, "Placemark")
        el(mark, "name", f"{names.get(entity_id, entity_id)} track")
        span = el(mark, "TimeSpan")
        el(span, "begin", _iso(track[0].ts))
        el(span, "end", _iso(track[-1].ts))
        el(mark, "styleUrl", f"#{affiliations.get(entity_id, 'friend')}")
        line = el(mark, "LineString")
        el(line, "tessellate", "1")
        el(line, "coordinates", " ".join(f"{p.longitude:.7f},{p.latitude:.7f}" for p in track))
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")).encode()


def _download(body: bytes | dict[str, Any], media_type: str, filename: str) -> Response[Any]:
    return Response(
        body,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


class ExportApiController(Controller):
    """Exports of the picture and of tracks (KML, GeoJSON)."""

    path = "/api/v1"
    tags = ["export"]
    guards = [requires("read")]

    @get("/export/picture.geojson", responses=ERRORS)
    async def picture_geojson(
        self,
        request: Req,
        tracks: NamedDependency[TrackService],
        minutes: Minutes = None,
        start: When = None,
        end: When = None,
    ) -> Response[Any]:
        """Every visible entity (a point, or null geometry without a position) and its track in the window."""
        pic = await tracks.picture(principal_of(request).visible_orgs, minutes, start, end, MAX_POINTS)
        return _download(geojson(pic), GEOJSON, "overwatch-picture.geojson")

    @get("/export/picture.kml", responses=ERRORS)
    async def picture_kml(
        self,
        request: Req,
        tracks: NamedDependency[TrackService],
        minutes: Minutes = None,
        start: When = None,
        end: When = None,
    ) -> Response[Any]:
        """The same picture as KML 2.2."""
        pic = await tracks.picture(principal_of(request).visible_orgs, minutes, start, end, MAX_POINTS)
        return _download(kml(pic, "Overwatch picture"), KML, "overwatch-picture.kml")

    @get("/organizations/{org_id:str}/entities/{entity_id:str}/track.geojson", responses=ERRORS)
    async def track_geojson(
        self,
        request: Req,
        org_id: IdPath,
        entity_id: IdPath,
        tracks: NamedDependency[TrackService],
        minutes: Minutes = None,
        start: When = None,
        end: When = None,
    ) -> Response[Any]:
        """One entity's position now and its track in the window, as GeoJSON."""
        await authorize(request, org_id, "read")
        pic = await tracks.of_entity(org_id, entity_id, minutes, start, end, MAX_POINTS)
        return _download(geojson(pic), GEOJSON, f"{entity_id}-track.geojson")

    @get("/organizations/{org_id:str}/entities/{entity_id:str}/track.kml", responses=ERRORS)
    async def track_kml(
        self,
        request: Req,
        org_id: IdPath,
        entity_id: IdPath,
        tracks: NamedDependency[TrackService],
        minutes: Minutes = None,
        start: When = None,
        end: When = None,
    ) -> Response[Any]:
        """The same as KML 2.2."""
        await authorize(request, org_id, "read")
        pic = await tracks.of_entity(org_id, entity_id, minutes, start, end, MAX_POINTS)
        return _download(kml(pic, f"{pic.cards[0].name} track"), KML, f"{entity_id}-track.kml")
