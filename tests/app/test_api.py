"""REST API: CRUD, pagination, state, commands, detections, clear 4xx problem+json errors."""

from __future__ import annotations

import httpx
import pytest

from app.runtime import Runtime
from core import topology
from tests.helpers import eventually, telemetry

V1 = "/api/v1/organizations"


async def test_organization_and_entity_crud(client: httpx.AsyncClient) -> None:
    r = await client.post(V1, json={"name": "Blue Force", "org_type": "military", "metadata": {"x": 1}})
    assert r.status_code == 201, r.text
    org_id = r.json()["org_id"]
    r = await client.post(
        f"{V1}/{org_id}/entities",
        json={
            "name": "Hawk",
            "entity_type": "aircraft_fixed_wing",
            "priority": "high",
            "position": {"latitude": 10.0, "longitude": 20.0},
            "video_config": {"protocol": "rtsp", "stream_url": "rtsp://cam/1"},
        },
    )
    assert r.status_code == 201, r.text
    entity = r.json()
    assert entity["entity_id"] and entity["org_id"] == org_id and entity["video_config"]["protocol"] == "rtsp"
    r = await client.get(f"{V1}/{org_id}/entities/{entity['entity_id']}")
    assert r.status_code == 200 and r.json()["name"] == "Hawk"
    r = await client.put(f"{V1}/{org_id}/entities/{entity['entity_id']}", json={"status": "error"})
    assert r.status_code == 200 and r.json()["status"] == "error" and r.json()["name"] == "Hawk"
    # The seeds' words are active | offline | error; older words are normalised, not refused.
    r = await client.put(f"{V1}/{org_id}/entities/{entity['entity_id']}", json={"status": "maintenance"})
    assert r.status_code == 200 and r.json()["status"] == "offline" and r.json()["name"] == "Hawk"
    r = await client.put(f"{V1}/{org_id}", json={"name": "Blue Force 2"})
    assert r.status_code == 200 and r.json()["name"] == "Blue Force 2"
    r = await client.get(f"{V1}/{org_id}/entities")
    assert r.json()["total"] == 1
    r = await client.delete(f"{V1}/{org_id}/entities/{entity['entity_id']}")
    assert r.status_code == 200
    assert (await client.get(f"{V1}/{org_id}/entities/{entity['entity_id']}")).status_code == 404
    assert (await client.delete(V1 + f"/{org_id}")).status_code == 200
    assert (await client.get(V1 + f"/{org_id}")).status_code == 404


async def test_pagination(client: httpx.AsyncClient) -> None:
    for i in range(5):
        await client.post(V1, json={"name": f"Org {i}", "org_type": "ngo", "org_id": f"o{i}"})
    page = (await client.get(V1, params={"limit": 2, "offset": 2})).json()
    assert page["total"] == 5 and page["limit"] == 2 and [o["org_id"] for o in page["items"]] == ["o2", "o3"]
    assert (await client.get(V1, params={"limit": 0})).status_code == 400
    assert (await client.get(V1, params={"limit": 5000})).status_code == 400


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        (V1, {"name": "", "org_type": "military"}, 400),
        (V1, {"name": "x", "org_type": "pirates"}, 400),
        (V1, {"name": "x", "org_type": "ngo", "surprise": True}, 400),
        (V1, {"name": "x", "org_type": "ngo", "org_id": "bad id!"}, 400),
        (V1, "not an object", 400),
        (f"{V1}/missing/entities", {"entity_type": "aircraft_multirotor"}, 404),
    ],
)
async def test_bad_input_is_a_clear_4xx(client: httpx.AsyncClient, path: str, body: object, status: int) -> None:
    r = await client.post(path, json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["detail"]


async def test_duplicate_ids_conflict(client: httpx.AsyncClient) -> None:
    body = {"name": "Dup", "org_type": "ngo", "org_id": "dup"}
    assert (await client.post(V1, json=body)).status_code == 201
    r = await client.post(V1, json=body)
    assert r.status_code == 409 and "already exists" in r.json()["detail"]


async def test_entity_validation(client: httpx.AsyncClient) -> None:
    await client.post(V1, json={"name": "O", "org_type": "ngo", "org_id": "o"})
    for body in (
        {"entity_type": "submarine_of_doom"},
        {"entity_type": "aircraft_vtol", "position": {"latitude": 91, "longitude": 0}},
        {"entity_type": "aircraft_vtol", "entity_id": "a.b"},
    ):
        r = await client.post(f"{V1}/o/entities", json=body)
        assert r.status_code == 400, (body, r.text)


async def test_state_commands_and_live_entities(client: httpx.AsyncClient, runtime: Runtime) -> None:
    await client.post(V1, json={"name": "O", "org_type": "ngo", "org_id": "o"})
    await client.post(f"{V1}/o/entities", json={"entity_type": "aircraft_multirotor", "entity_id": "d1"})
    assert (await client.get(f"{V1}/o/entities/d1/state")).status_code in (200, 404)
    await runtime.js.publish(topology.telemetry_subject("o", "d1"), telemetry(battery=66.0))
    r = await eventually(lambda: _get_ok(client, "/api/entities/d1"), what="state via PRD route")
    assert r.json()["power"]["battery_remaining"] == 66.0 and r.headers["kv-revision"]
    live = await eventually(lambda: _live(client), what="live list")
    assert live[0]["entity_id"] == "d1" and live[0]["status"] == "active"
    r = await client.post(f"{V1}/o/entities/d1/commands", json={"command": "goto", "params": {"latitude": 1}})
    assert r.status_code == 422 and "longitude" in r.json()["detail"]
    r = await client.post(f"{V1}/o/entities/d1/commands", json={"command": "hold"})
    assert r.status_code == 202 and r.json()["status"] in ("queued", "delivered")
    cmd = r.json()["command_id"]
    r = await client.get(f"{V1}/o/entities/d1/commands/{cmd}")
    assert r.status_code == 200 and r.json()["command"] == "hold"
    listing = (await client.get(f"{V1}/o/entities/d1/commands")).json()
    assert listing["total"] == 1
    assert (await client.get(f"{V1}/o/entities/d1/detections")).json()["total"] == 0
    assert (await client.get(f"{V1}/o/entities/d1/alerts")).json()["total"] == 0
    assert (await client.get(f"{V1}/o/entities/nope/commands")).status_code == 404
    assert (await client.get("/api/entities/nope")).status_code == 404


async def _get_ok(client: httpx.AsyncClient, path: str) -> httpx.Response | None:
    r = await client.get(path)
    return r if r.status_code == 200 and b"power" in r.content else None


async def _live(client: httpx.AsyncClient) -> list[dict[str, object]] | None:
    body = (await client.get("/api/entities")).json()
    return body or None
