"""Health endpoints and the overview page, in-process."""

from __future__ import annotations

import httpx
from bs4 import BeautifulSoup

from app.runtime import Runtime


async def test_live(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/live")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_ready_reports_every_check(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) >= {"nats", "jetstream", "database", "workers"}
    assert all(check["ok"] for check in body["checks"].values())


async def test_ready_is_503_when_the_database_is_gone(client: httpx.AsyncClient, runtime: Runtime) -> None:
    await runtime.db.close()
    response = await client.get("/health/ready")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"]["ok"] is False and checks["nats"]["ok"] is True


async def test_overview_page_renders_with_live_region(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    soup = BeautifulSoup(response.text, "html.parser")
    region = soup.select_one("[sse-connect]")
    assert region is not None and region["sse-connect"] == "/events/overview"
    swap = soup.select_one('[sse-swap="system-status"]')
    assert swap is not None and swap.select_one("#system-status") is not None
    scripts = [s["src"] for s in soup.select("script[src]")]
    assert any("htmx-2.0.11" in s for s in scripts) and any("htmx-ext-sse" in s for s in scripts)
    assert not soup.select("script:not([src])"), "no inline scripts (CSP)"


async def test_unknown_route_is_problem_json(client: httpx.AsyncClient) -> None:
    response = await client.get("/no/such/thing")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
