"""Sign-in, sessions, CSRF, lockout, security headers — as a browser would drive them."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from app.runtime import Runtime
from db import audit as audit_db
from tests.helpers import ManualClock

PASSWORD = "correct horse battery"


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    """Drive the sign-in form (fetch it for the CSRF cookie/token, then post)."""
    page = await client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, page.text[:500]
    return await client.post(
        "/login", data={"email": email, "password": password, "csrf_token": token.group(1), "next": "/"}
    )


def csrf_from(html: str) -> str:
    """The session's CSRF token from a rendered page."""
    found = re.search(r'"X-CSRF-Token": "([0-9a-f]+)"', html)
    assert found, "page carries no CSRF token"
    return found.group(1)


async def make_user(rt: Runtime, email: str, role: str, orgs: list[str] | None = None) -> None:
    await rt.services.users.create("tests", email, role, orgs or [], PASSWORD)


async def test_sign_in_session_cookie_and_sign_out(runtime: Runtime, anon_client: httpx.AsyncClient) -> None:
    await make_user(runtime, "op@example.com", "operator", ["org1"])
    r = await anon_client.get("/", headers={"accept": "text/html"})
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
    r = await login(anon_client, "op@example.com")
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    assert "ow_session=" in cookie and "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    first_token = anon_client.cookies.get("ow_session")
    page = await anon_client.get("/")
    assert page.status_code == 200 and "op@example.com" in page.text
    # Signing in again rotates the session token and ends the previous session.
    await login(anon_client, "op@example.com")
    assert anon_client.cookies.get("ow_session") != first_token
    assert await runtime.services.sessions.resolve(first_token or "") is None
    token = csrf_from((await anon_client.get("/")).text)
    r = await anon_client.post("/logout", data={"csrf_token": token})
    assert r.status_code == 303
    assert (await anon_client.get("/", headers={"accept": "text/html"})).status_code == 303
    actions = [row.action for row in await audit_db.query_audit(runtime.db, actor="op@example.com")]
    assert "auth.login" in actions and "auth.logout" in actions


async def test_wrong_password_and_unknown_user_look_the_same(runtime: Runtime, anon_client: httpx.AsyncClient) -> None:
    await make_user(runtime, "v@example.com", "viewer")
    a = await login(anon_client, "v@example.com", "wrong password!!")
    b = await login(anon_client, "nobody@example.com", "wrong password!!")
    assert a.status_code == b.status_code == 401
    assert "Wrong email or password" in a.text and "Wrong email or password" in b.text


async def test_csrf_is_required_for_session_writes(
    runtime: Runtime, anon_client: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    await make_user(runtime, "admin2@example.com", "admin")
    await login(anon_client, "admin2@example.com")
    body = {"name": "CSRF Org", "org_type": "ngo", "org_id": "csrforg"}
    r = await anon_client.post("/api/v1/organizations", json=body)
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    r = await anon_client.post("/api/v1/organizations", json=body, headers={"X-CSRF-Token": "0" * 40})
    assert r.status_code == 403
    token = csrf_from((await anon_client.get("/")).text)
    r = await anon_client.post("/api/v1/organizations", json=body, headers={"X-CSRF-Token": token})
    assert r.status_code == 201, r.text
    # API keys carry no cookie, so they need no CSRF token.
    r = await client.post("/api/v1/organizations", json={**body, "org_id": "keyorg"})
    assert r.status_code == 201
    denied = await audit_db.query_audit(runtime.db, action="auth.csrf", outcome="denied")
    assert len(denied) == 2


@pytest.mark.parametrize("path", ["/", "/login", "/admin/users", "/no/such/page", "/health/ready"])
async def test_security_headers(client: httpx.AsyncClient, path: str) -> None:
    r = await client.get(path, headers={"accept": "text/html"})
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "same-origin"
    if r.headers.get("content-type", "").startswith("text/html"):
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "'unsafe-inline'" not in csp
        assert "frame-ancestors 'none'" in csp and r.headers["x-frame-options"] == "DENY"


async def test_lockout_after_failures_refuses_without_checking(make_runtime: Any) -> None:
    from app.main import create_app

    clock = ManualClock()
    rt: Runtime = await make_runtime(clock=clock)
    await make_user(rt, "target@example.com", "viewer")
    transport = httpx.ASGITransport(app=create_app(rt))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        for _ in range(5):
            assert (await login(c, "target@example.com", "not the password")).status_code == 401
        r = await login(c, "target@example.com")  # 6th, with the right password
        assert r.status_code == 401 and "Wrong email or password" in r.text  # the same as a wrong one
        refused = await audit_db.query_audit(rt.db, actor="target@example.com", outcome="denied")
        assert refused and "password not checked" in refused[0].detail
        locks = await audit_db.query_audit(rt.db, action="user.lock")
        assert len(locks) == 1
        clock.advance(rt.settings.lockout_minutes * 60 - 1)
        assert (await login(c, "target@example.com")).status_code == 401  # a second before the lock ends
        clock.advance(2)
        assert (await login(c, "target@example.com")).status_code == 303
        unlocks = await audit_db.query_audit(rt.db, action="user.unlock")
        assert unlocks and unlocks[0].detail == "lockout expired"


async def test_idle_session_expires(make_runtime: Any) -> None:
    from app.main import create_app

    clock = ManualClock()
    rt: Runtime = await make_runtime(clock=clock)
    await make_user(rt, "idle@example.com", "viewer")
    transport = httpx.ASGITransport(app=create_app(rt))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        await login(c, "idle@example.com")
        assert (await c.get("/api/v1/organizations")).status_code == 200
        idle = rt.settings.session_idle_minutes * 60
        clock.advance(idle - 1)
        assert (await c.get("/api/v1/organizations")).status_code == 200  # still within the idle time: touched
        clock.advance(idle + 1)
        assert (await c.get("/api/v1/organizations")).status_code == 401


async def test_sse_streams_need_sign_in(runtime: Runtime, live_server: Any, admin_key: str) -> None:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=5) as http:
        r = await http.get("/events/overview")
        assert r.status_code == 401
        async with http.stream("GET", "/events/overview", headers={"Authorization": f"Bearer {admin_key}"}) as s:
            assert s.status_code == 200 and s.headers["content-type"].startswith("text/event-stream")
            async for line in s.aiter_lines():
                if line.startswith("event:"):
                    assert line == "event: nav-alerts"  # every page stream starts with the nav badge
                    break
