"""Every route × every kind of caller gets exactly the access its role allows; denials are audited."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from app.main import create_app
from app.runtime import Runtime
from core import topology
from db import audit as audit_db
from services.schemas import CommandCreate, EntityCreate, OrgCreate
from tests.app.test_auth_flow import PASSWORD, csrf_from, login
from tests.helpers import eventually, seed, state, telemetry

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Route:
    """A route and what it needs: permission, and where (org1, any visible org, or every org)."""

    method: str
    path: str
    permission: str
    scope: str  # "org1" | "any" | "global"
    body: Any = None
    page: bool = False


@dataclass
class Caller:
    name: str
    client: httpx.AsyncClient
    permissions: frozenset[str]
    orgs: frozenset[str] | None  # None = all
    csrf: str = ""

    def allowed(self, route: Route) -> bool:
        if route.scope == "global":
            return "admin" in self.permissions and self.orgs is None
        if route.permission not in self.permissions:
            return False
        return route.scope == "any" or self.orgs is None or "org1" in self.orgs


def routes(fixture: dict[str, str]) -> list[Route]:
    e1, cmd, alert = fixture["entity"], fixture["command"], fixture["alert"]
    base = f"/api/v1/organizations/org1/entities/{e1}"
    return [
        Route("GET", "/", "read", "any", page=True),
        Route("GET", "/account", "read", "any", page=True),
        Route("GET", "/admin/users", "admin", "global", page=True),
        Route("GET", "/admin/keys", "admin", "global", page=True),
        Route("GET", "/admin/audit", "admin", "global", page=True),
        Route("GET", "/admin/audit/export.csv", "admin", "global"),
        Route("GET", "/admin/audit/export.json", "admin", "global"),
        Route("GET", "/admin/sessions", "admin", "global", page=True),
        Route("GET", "/api/v1/organizations", "read", "any"),
        Route("POST", "/api/v1/organizations", "admin", "global", {"name": "X", "org_type": "ngo"}),
        Route("GET", "/api/v1/organizations/org1", "read", "org1"),
        Route("PUT", "/api/v1/organizations/org1", "admin", "org1", {"description": "changed"}),
        Route("GET", "/api/v1/organizations/org1/entities", "read", "org1"),
        Route("POST", "/api/v1/organizations/org1/entities", "admin", "org1", {"entity_type": "waypoint"}),
        Route("GET", base, "read", "org1"),
        Route("PUT", base, "admin", "org1", {"priority": "high"}),
        Route("GET", f"{base}/state", "read", "org1"),
        Route("POST", f"{base}/commands", "commands", "org1", {"command": "hold"}),
        Route("GET", f"{base}/commands", "read", "org1"),
        Route("GET", f"{base}/commands/{cmd}", "read", "org1"),
        Route("GET", f"{base}/detections", "read", "org1"),
        Route("GET", f"{base}/alerts", "read", "org1"),
        Route("GET", f"{base}/track", "read", "org1"),
        Route("GET", "/api/entities", "read", "any"),
        Route("GET", f"/api/entities/{e1}", "read", "org1"),
        Route("GET", "/api/v1/alerts", "read", "any"),
        Route("POST", f"/api/v1/alerts/{alert}/ack", "commands", "org1"),
        Route("GET", "/api/schema/openapi.json", "read", "any"),
        Route("GET", "/fleet", "read", "any", page=True),
        Route("GET", f"/entities/{e1}", "read", "org1", page=True),
        Route("POST", "/fleet/embed/org1", "admin", "org1"),
        Route("POST", f"/entities/{e1}/embed", "admin", "org1"),
    ]


@pytest.fixture
async def world(runtime: Runtime) -> AsyncIterator[dict[str, Any]]:
    (e1,) = await seed(runtime, org_id="org1", entities=1, prefix="m")
    await runtime.services.registry.create_org(OrgCreate(org_id="org2", name="Other", org_type="ngo"))
    await runtime.services.registry.create_entity("org2", EntityCreate(entity_id="o2e", entity_type="waypoint"))
    await runtime.js.publish(topology.telemetry_subject("org1", e1), telemetry(battery=10.0))
    await eventually(lambda: state(runtime, e1), what="state")
    await eventually(lambda: runtime.services.state_cache.get(e1), what="cache")
    cmd = await runtime.services.commands.send("org1", e1, CommandCreate(command="hold"))
    alert = await eventually(lambda: _alert(runtime), what="battery alert")
    yield {"entity": e1, "command": cmd.command_id, "alert": alert}


async def _alert(runtime: Runtime) -> str | None:
    rows = await runtime.db.fetch_rows("SELECT alert_id FROM alerts")
    return rows[0][0] if rows else None


async def _callers(runtime: Runtime) -> list[Caller]:
    app = create_app(runtime)
    transport = httpx.ASGITransport(app=app)
    callers: list[Caller] = []

    def new_client(headers: dict[str, str] | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=headers or {})

    callers.append(Caller("anonymous", new_client(), frozenset(), frozenset()))
    for email, role, orgs, perms in (
        ("viewer@x.org", "viewer", ["org1"], {"read"}),
        ("operator@x.org", "operator", ["org1"], {"read", "commands"}),
        ("admin@x.org", "admin", [], {"read", "commands", "admin"}),
        ("other@x.org", "operator", ["org2"], {"read", "commands"}),
    ):
        await runtime.services.users.create("tests", email, role, orgs, PASSWORD)
        client = new_client()
        assert (await login(client, email)).status_code == 303
        token = csrf_from((await client.get("/")).text)
        callers.append(Caller(email, client, frozenset(perms), None if role == "admin" else frozenset(orgs), token))
    for name, scopes, org in (
        ("key-read-org1", ["read"], "org1"),
        ("key-commands-org1", ["read", "commands"], "org1"),
        ("key-admin-org1", ["read", "commands", "admin"], "org1"),
        ("key-admin-all", ["read", "commands", "admin"], None),
        ("key-read-org2", ["read"], "org2"),
    ):
        key = await runtime.services.apikeys.create("tests", name, scopes, org)
        callers.append(
            Caller(
                name, new_client({"X-API-Key": key.key}), frozenset(scopes), None if org is None else frozenset({org})
            )
        )
    return callers


async def _denials(runtime: Runtime) -> int:
    return int(await runtime.db.scalar("SELECT COUNT(*) FROM audit_log WHERE outcome = 'denied'") or 0)


async def test_access_matrix(runtime: Runtime, world: dict[str, Any]) -> None:
    callers = await _callers(runtime)
    failures: list[str] = []
    try:
        for route in routes(world):
            for caller in callers:
                headers = {"accept": "text/html"} if route.page else {}
                if caller.csrf and route.method != "GET":
                    headers["X-CSRF-Token"] = caller.csrf
                before = await _denials(runtime)
                r = await caller.client.request(route.method, route.path, json=route.body, headers=headers)
                expected = caller.allowed(route)
                if expected:
                    ok = r.status_code < 400
                elif caller.name == "anonymous":
                    ok = r.status_code == (303 if route.page else 401)
                else:
                    ok = r.status_code == 403
                if not expected and ok and await _denials(runtime) <= before:
                    failures.append(f"{caller.name} {route.method} {route.path}: denial not audited")
                if not ok:
                    failures.append(
                        f"{caller.name} {route.method} {route.path}: got {r.status_code}, "
                        f"expected {'allowed' if expected else 'denied'} ({r.text[:120]!r})"
                    )
    finally:
        for caller in callers:
            await caller.client.aclose()
    assert not failures, "\n".join(failures)


async def test_lists_only_show_visible_organisations(runtime: Runtime, world: dict[str, Any]) -> None:
    callers = {c.name: c for c in await _callers(runtime)}
    try:
        orgs = (await callers["other@x.org"].client.get("/api/v1/organizations")).json()
        assert [o["org_id"] for o in orgs["items"]] == ["org2"]
        live = (await callers["key-read-org2"].client.get("/api/entities")).json()
        assert all(e["org_id"] == "org2" for e in live)
        live1 = (await callers["viewer@x.org"].client.get("/api/entities")).json()
        assert [e["entity_id"] for e in live1] == [world["entity"]]
        alerts = (await callers["other@x.org"].client.get("/api/v1/alerts")).json()
        assert alerts["total"] == 0
        page = (await callers["viewer@x.org"].client.get("/")).text
        assert "/admin/users" not in page, "viewers see no admin controls"
        assert re.search(r'href="/admin/users"', (await callers["admin@x.org"].client.get("/")).text)
    finally:
        for caller in callers.values():
            await caller.client.aclose()
    assert await audit_db.count_audit(runtime.db, outcome="denied") >= 0
