"""Console pages render (server-side, no JavaScript needed) with live regions wired for SSE."""

from __future__ import annotations

import httpx
import pytest
from bs4 import BeautifulSoup

from app.runtime import Runtime
from core import topology
from tests.helpers import eventually, seed, telemetry


@pytest.fixture
async def fleet(runtime: Runtime) -> list[str]:
    ids = await seed(runtime, entities=3)
    for i, entity_id in enumerate(ids):
        await runtime.js.publish(topology.telemetry_subject("org1", entity_id), telemetry(lat=37 + i / 100))
    for entity_id in ids:
        await eventually(lambda e=entity_id: (runtime.services.state_cache.get(e) or {}).get("is_live"), what="live")
    return ids


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/fleet",
        "/fleet?sort=-battery&q=ent&show=live",
        "/map",
        "/alerts",
        "/alerts?status=all&kind=battery",
        "/account",
    ],
)
async def test_pages_render(client: httpx.AsyncClient, fleet: list[str], path: str) -> None:
    r = await client.get(path)
    assert r.status_code == 200, r.text[:2000]
    soup = BeautifulSoup(r.text, "html.parser")
    app = soup.select_one("#app")
    assert app is not None and app.get("sse-connect", "").startswith("/events/")
    assert soup.select_one("#nav-alerts") is not None
    assert not soup.select("[style]"), "no style attributes (CSP)"
    assert not soup.select("script:not([src])"), "no inline scripts (CSP)"


async def test_overview_has_a_card_per_entity(client: httpx.AsyncClient, fleet: list[str]) -> None:
    soup = BeautifulSoup((await client.get("/")).text, "html.parser")
    for entity_id in fleet:
        slot = soup.select_one(f'[sse-swap="entity-card:{entity_id}"]')
        assert slot is not None and slot.select_one(f"#card-{entity_id}") is not None
    assert soup.select_one('[sse-swap="fleet-summary"] #fleet-summary') is not None


async def test_entity_page_regions(client: httpx.AsyncClient, fleet: list[str], runtime: Runtime) -> None:
    common = (
        "entity-header",
        "entity-telemetry",
        "entity-attitude",
        "entity-sparklines",
        "command-list",
        "entity-alerts",
    )
    isr = ("video-overlay", "tracked-objects", "detection-events")
    camera = await seed_camera(runtime)
    for entity_id, regions in ((fleet[0], common), (camera, common + isr)):
        r = await client.get(f"/entities/{entity_id}")
        assert r.status_code == 200, r.text[:2000]
        soup = BeautifulSoup(r.text, "html.parser")
        for region in regions:
            assert len(soup.select(f'[sse-swap="{region}:{entity_id}"]')) == 1, (entity_id, region)
        assert soup.select_one("form.command-form") is not None
    assert (await client.get("/entities/nope")).status_code == 404


async def seed_camera(runtime: Runtime) -> str:
    from services.schemas import EntityCreate

    rec = await runtime.services.registry.create_entity(
        "org1", EntityCreate(entity_id="cam-x", entity_type="isr_sensor", name="Cam")
    )
    return rec.entity_id


async def test_embeds_need_sign_in_until_public(
    client: httpx.AsyncClient, anon_client: httpx.AsyncClient, fleet: list[str], runtime: Runtime
) -> None:
    entity_id = fleet[0]
    r = await anon_client.get(f"/embed/entity/{entity_id}", headers={"accept": "text/html"})
    assert r.status_code == 303
    assert (await client.get(f"/embed/entity/{entity_id}")).status_code == 200
    page = await client.get(f"/entities/{entity_id}")
    import re

    token = re.search(r'"X-CSRF-Token": "([0-9a-f]+)"', page.text)
    assert token is None  # API-key callers have no session, hence no CSRF token; they need none
    r = await client.post(f"/entities/{entity_id}/embed", data={"public": "on"})
    assert r.status_code == 303
    r = await anon_client.get(f"/embed/entity/{entity_id}")
    assert r.status_code == 200
    assert "frame-ancestors 'self'" in r.headers["content-security-policy"]
    assert "x-frame-options" not in r.headers
    assert (await anon_client.get(f"/embed/entity/{fleet[1]}", headers={"accept": "text/html"})).status_code == 303
    r = await client.get("/embed/fleet?org=org1")
    assert r.status_code == 200 and fleet[2] in r.text


async def test_fleet_embed_made_public_from_the_fleet_page(
    client: httpx.AsyncClient, anon_client: httpx.AsyncClient, fleet: list[str], runtime: Runtime
) -> None:
    html = {"accept": "text/html"}
    assert (await anon_client.get("/embed/fleet?org=org1", headers=html)).status_code == 303
    page = BeautifulSoup((await client.get("/fleet")).text, "html.parser")
    form = page.select_one('form[action="/fleet/embed/org1"]')
    assert form is not None and form.select_one('input[name="public"]') is not None
    assert (await client.post("/fleet/embed/org1", data={"public": "on"})).status_code == 303
    r = await anon_client.get("/embed/fleet?org=org1")
    assert r.status_code == 200 and all(e in r.text for e in fleet)
    assert (await anon_client.get("/embed/fleet?org=org2", headers=html)).status_code == 303
    audit = await runtime.db.fetch_rows("SELECT action, target FROM audit_log WHERE action LIKE 'embed.%'")
    assert ("embed.public", "fleet:org1") in [tuple(r) for r in audit]
    assert (await client.post("/fleet/embed/org1", data={})).status_code == 303
    assert (await anon_client.get("/embed/fleet?org=org1", headers=html)).status_code == 303
    assert (await client.post("/fleet/embed/nope", data={"public": "on"})).status_code == 404
