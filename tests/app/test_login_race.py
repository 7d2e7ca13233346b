"""Issue 11, finding 6: racing wrong passwords cannot bypass the per-account lockout, and
a refused sign-in never tells whether the account exists, is locked or is disabled.

Against a real server (uvicorn on a port, real SQLite): twenty concurrent sign-ins with
wrong passwords for one account used to be checked all twenty, leaving the account
unlocked (a lost update of the failure counter).
"""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from app.runtime import Runtime
from db import audit as audit_db
from services.auth.users import REFUSED
from tests.conftest import LiveServer

PASSWORD = "correct horse battery"
CONCURRENT = 20


async def _form(client: httpx.AsyncClient) -> str:
    """Fetch the sign-in form: its CSRF cookie lands in the client, the token is returned."""
    page = await client.get("/login")
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text[:300]
    return found.group(1)


async def _sign_in(client: httpx.AsyncClient, token: str, email: str, password: str) -> httpx.Response:
    return await client.post("/login", data={"email": email, "password": password, "csrf_token": token, "next": "/"})


def _message(response: httpx.Response) -> str:
    found = re.search(r'<p class="flash flash-error" role="alert">([^<]*)</p>', response.text)
    return found.group(1) if found else ""


@pytest.mark.timeout(60)
async def test_concurrent_wrong_passwords_lock_the_account(runtime: Runtime, live_server: LiveServer) -> None:
    users = runtime.services.users
    await users.create("tests", "target@example.com", "viewer", [], PASSWORD)
    limit = runtime.settings.login_max_failures
    clients = [httpx.AsyncClient(base_url=live_server.url, timeout=30) for _ in range(CONCURRENT)]
    try:
        tokens = [await _form(c) for c in clients]
        responses = await asyncio.gather(
            *(
                _sign_in(c, t, "target@example.com", f"wrong password {i}")
                for i, (c, t) in enumerate(zip(clients, tokens, strict=True))
            )
        )
        assert [r.status_code for r in responses] == [401] * CONCURRENT
        assert {_message(r) for r in responses} == {REFUSED}

        # No more passwords were checked than the budget allows; the rest were refused unchecked.
        rows = await audit_db.query_audit(runtime.db, actor="target@example.com", action="auth.login", limit=100)
        checked = [r for r in rows if r.detail.startswith("wrong password")]
        unchecked = [r for r in rows if "password not checked" in r.detail]
        assert len(checked) == limit, [r.detail for r in rows]
        assert len(unchecked) == CONCURRENT - limit
        assert len(await audit_db.query_audit(runtime.db, action="user.lock", limit=10)) == 1
        view = next(u for u in await users.list_all() if u.email == "target@example.com")
        assert view.locked

        # The right password is refused now, exactly as a wrong one, an unknown account or a
        # disabled account is: same status, same message.
        client = clients[0]
        locked = await _sign_in(client, await _form(client), "target@example.com", PASSWORD)
        unknown = await _sign_in(client, await _form(client), "nobody@example.com", PASSWORD)
        disabled_user = await users.create("tests", "off@example.com", "viewer", [], PASSWORD)
        await users.update("tests", disabled_user.user_id, disabled=True)
        disabled = await _sign_in(client, await _form(client), "off@example.com", PASSWORD)
        for response in (locked, unknown, disabled):
            assert response.status_code == 401 and _message(response) == REFUSED, response.text[:500]
        # The audit log keeps the real reasons.
        details = {r.detail for r in await audit_db.query_audit(runtime.db, action="auth.login", limit=100)}
        assert {"unknown account", "account disabled", "account locked; password not checked"} <= details
    finally:
        for c in clients:
            await c.aclose()


@pytest.mark.timeout(60)
async def test_a_right_password_within_the_budget_still_signs_in(runtime: Runtime, live_server: LiveServer) -> None:
    await runtime.services.users.create("tests", "ok@example.com", "viewer", [], PASSWORD)
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as client:
        for _ in range(runtime.settings.login_max_failures - 1):
            assert (await _sign_in(client, await _form(client), "ok@example.com", "not it at all")).status_code == 401
        good = await _sign_in(client, await _form(client), "ok@example.com", PASSWORD)
        assert good.status_code == 303 and good.headers["location"] == "/"
    # The counter started again: the same number of failures once more does not lock it.
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as client:
        for _ in range(runtime.settings.login_max_failures - 1):
            assert (await _sign_in(client, await _form(client), "ok@example.com", "not it at all")).status_code == 401
    view = next(u for u in await runtime.services.users.list_all() if u.email == "ok@example.com")
    assert not view.locked
    rows = await audit_db.query_audit(runtime.db, actor="ok@example.com", action="auth.login", outcome="success")
    assert len(rows) == 1
