"""KML and GeoJSON exports of the demo: valid (RFC 7946 rules; the OGC KML 2.2 schema and fastkml),
every entity in them, exactly the requested track window, and the API's organisation walls."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from fastkml import kml as fastkml
from fastkml import validator
from lxml import etree

from app.demo import DEMO_FLEET, seed_demo, start_demo_fleet
from app.main import create_app
from app.runtime import Runtime
from db import tracks as tracks_db
from db.tracks import TrackPoint
from services.schemas import EntityCreate, EntityUpdate
from tests.helpers import eventually
from workers.simulator import FaultConfig

KML_NS = "{http://www.opengis.net/kml/2.2}"


def check_rfc7946(doc: dict[str, Any]) -> None:
    """The RFC 7946 rules a GeoJSON consumer relies on."""
    assert doc["type"] == "FeatureCollection" and isinstance(doc["features"], list)
    assert "crs" not in doc  # 7946 §4: no crs member; WGS 84 is implied

    def position(p: Any) -> None:
        assert isinstance(p, list) and 2 <= len(p) <= 3 and all(isinstance(v, (int, float)) for v in p)
        assert all(math.isfinite(v) for v in p)
        assert -180 <= p[0] <= 180 and -90 <= p[1] <= 90  # longitude first (§3.1.1)

    for feature in doc["features"]:
        assert feature["type"] == "Feature" and "properties" in feature and "geometry" in feature
        assert isinstance(feature.get("id", ""), (str, int))
        geometry = feature["geometry"]
        if geometry is None:
            continue  # §3.2: an unlocated feature has a null geometry
        assert geometry["type"] in ("Point", "LineString")
        if geometry["type"] == "Point":
            position(geometry["coordinates"])
        else:
            assert len(geometry["coordinates"]) >= 2  # §3.1.4
            for p in geometry["coordinates"]:
                position(p)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.timeout(60)
async def test_exports_of_the_demo_validate_and_hold_every_entity_and_the_track_window(
    runtime: Runtime, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    await seed_demo(runtime)
    start_demo_fleet(runtime, FaultConfig())
    ids = {eid for eid, _n, _k in DEMO_FLEET}
    cache = runtime.services.state_cache
    await eventually(lambda: all((cache.get(e) or {}).get("is_live") for e in ids), what="demo live")
    # A track for Raven 1: three points two hours ago, three in the last minutes.
    now = time.time()
    old = [now - 7200 + i * 10 for i in range(3)]
    recent = [now - 300 + i * 10 for i in range(3)]
    await tracks_db.insert_points(
        runtime.db,
        [
            TrackPoint(entity_id="demo-uav-1", ts=t, latitude=37.42 + i / 1000, longitude=-122.17)
            for i, t in enumerate(old)
        ]
        + [
            TrackPoint(entity_id="demo-uav-1", ts=t, latitude=37.43 + i / 1000, longitude=-122.16)
            for i, t in enumerate(recent)
        ],
    )

    r = await client.get("/api/v1/export/picture.geojson", params={"minutes": 30})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/geo+json")
    assert "attachment" in r.headers["content-disposition"]
    doc = r.json()
    check_rfc7946(doc)
    entities = {f["properties"]["entity_id"]: f for f in doc["features"] if f["properties"]["kind"] == "entity"}
    assert set(entities) >= ids
    raven = entities["demo-uav-1"]["properties"]
    assert (
        raven["affiliation"] == "friend" and raven["cot_type"] == "a-f-A-M-H-Q" and raven["sidc"] == "SFAPMHQ--------"
    )
    tracks = {f["properties"]["entity_id"]: f for f in doc["features"] if f["properties"]["kind"] == "track"}
    times = tracks["demo-uav-1"]["properties"]["times"]
    assert _iso(recent[0]) in times and not any(_iso(t) in times for t in old)  # only the requested window

    # An explicit window around the old points: only those.
    window = {"start": _iso(now - 7300), "end": _iso(now - 7000)}
    doc = (await client.get("/api/v1/export/picture.geojson", params=window)).json()
    check_rfc7946(doc)
    tracks = {f["properties"]["entity_id"]: f for f in doc["features"] if f["properties"]["kind"] == "track"}
    assert tracks["demo-uav-1"]["geometry"]["coordinates"] == [[-122.17, round(37.42 + i / 1000, 7)] for i in range(3)]

    r = await client.get("/api/v1/export/picture.kml", params={"minutes": 30})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/vnd.google-earth.kml+xml")
    path = tmp_path / "picture.kml"
    path.write_bytes(r.content)
    assert validator.validate(file_to_validate=path)  # the OGC KML 2.2 schema (bundled with fastkml)
    parsed = fastkml.KML.from_string(r.content)
    document = parsed.features[0]
    folders = {f.name: f for f in document.features}
    names = {p.name for p in folders["Entities"].features}
    assert names >= {name for _e, name, _k in DEMO_FLEET}
    placemark = next(p for p in folders["Entities"].features if p.name == "Raven 1")
    assert placemark.geometry is not None and placemark.geometry.geom_type == "Point"
    track = next(p for p in folders["Tracks"].features if p.name == "Raven 1 track")
    assert track.geometry.geom_type == "LineString" and len(track.geometry.coords) >= 3
    root = etree.fromstring(r.content)
    assert root.tag == f"{KML_NS}kml"

    # One entity's track, both formats.
    base = "/api/v1/organizations/demo/entities/demo-uav-1/track"
    doc = (await client.get(base + ".geojson", params=window)).json()
    check_rfc7946(doc)
    assert [f["properties"]["kind"] for f in doc["features"]] == ["entity", "track"]
    r = await client.get(base + ".kml", params=window)
    path.write_bytes(r.content)
    assert validator.validate(file_to_validate=path)

    # Bad windows are a 4xx with a message, never a 500.
    for params in (
        {"start": "yesterday"},
        {"start": _iso(now), "end": _iso(now - 60)},
        {"minutes": 5, "start": _iso(now)},
    ):
        bad = await client.get("/api/v1/export/picture.geojson", params=params)
        assert 400 <= bad.status_code < 500 and bad.json()["detail"], params
    assert (await client.get("/api/v1/export/picture.kml", params={"minutes": 0})).status_code == 400


async def test_exports_keep_to_the_callers_organisations(runtime: Runtime, anon_client: httpx.AsyncClient) -> None:
    await seed_demo(runtime)
    registry = runtime.services.registry
    from services.schemas import OrgCreate

    await registry.create_org(OrgCreate(org_id="other", name="Other", org_type="civilian"))
    await registry.create_entity("other", EntityCreate(entity_id="o-1", name="O", entity_type="sensor_platform"))
    key = (await runtime.services.apikeys.create("tests", "other-reader", ["read"], "other")).key
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers={"X-API-Key": key}) as other:
        doc = (await other.get("/api/v1/export/picture.geojson")).json()
        assert not any(f["properties"]["org_id"] == "demo" for f in doc["features"])
        denied = await other.get("/api/v1/organizations/demo/entities/demo-uav-1/track.kml")
        assert denied.status_code in (403, 404)
    assert (await anon_client.get("/api/v1/export/picture.kml")).status_code == 401


async def test_affiliation_in_the_registry_api(runtime: Runtime, client: httpx.AsyncClient) -> None:
    await client.post("/api/v1/organizations", json={"org_id": "o1", "name": "O1", "org_type": "military"})
    r = await client.post(
        "/api/v1/organizations/o1/entities",
        json={"entity_id": "h-1", "name": "Bogey", "entity_type": "aircraft_fixed_wing", "affiliation": "hostile"},
    )
    assert r.status_code == 201 and r.json()["affiliation"] == "hostile"
    r = await client.post("/api/v1/organizations/o1/entities", json={"entity_id": "f-1", "entity_type": "waypoint"})
    assert r.json()["affiliation"] == "friend"  # our own fleet by default
    r = await client.put("/api/v1/organizations/o1/entities/h-1", json={"affiliation": "neutral"})
    assert r.status_code == 200 and r.json()["affiliation"] == "neutral"
    bad = await client.put("/api/v1/organizations/o1/entities/h-1", json={"affiliation": "enemy"})
    assert bad.status_code == 400
    row = await runtime.db.fetch_rows("SELECT affiliation FROM entities WHERE entity_id = 'h-1'")
    assert row[0]["affiliation"] == "neutral"  # projected into SQLite (migration 0007)
    # The entity worker copies it into the state root, where the console's symbol comes from.
    await eventually(
        lambda: (runtime.services.state_cache.get("h-1") or {}).get("affiliation") == "neutral", what="state root"
    )
    card = runtime.services.console.card("h-1")
    assert card is not None and card.sidc == "SNAPMFQ--------"
    assert (
        msgspec.json.decode((await client.get("/api/v1/organizations/o1/entities/h-1")).content)["affiliation"]
        == "neutral"
    )
    assert EntityUpdate(affiliation="pending").affiliation == "pending"
