"""The OpenAPI schema is served and describes the REST API."""

from __future__ import annotations

import httpx


async def test_openapi_schema(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/schema/openapi.json")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["info"]["title"] == "Constellation Overwatch API"
    paths = doc["paths"]
    for path in (
        "/api/v1/organizations",
        "/api/v1/organizations/{org_id}",
        "/api/v1/organizations/{org_id}/entities/{entity_id}/commands",
        "/api/entities",
    ):
        assert path in paths, sorted(paths)
    assert not any(p.startswith("/static") or p == "/" for p in paths)
