"""Admin pages render their flash message, never the macro that shows it."""

from __future__ import annotations

import httpx
import pytest

from app.runtime import Runtime
from db import users as users_db


@pytest.mark.parametrize("path", ["/admin/users", "/admin/sessions", "/admin/keys"])
async def test_admin_pages_show_no_macro_object(client: httpx.AsyncClient, path: str) -> None:
    r = await client.get(path)
    assert r.status_code == 200, r.text[:300]
    assert "Macro" not in r.text, "an imported macro shadowed the page's flash message"


async def test_user_page_shows_no_macro_object(runtime: Runtime, client: httpx.AsyncClient) -> None:
    await runtime.services.users.create("tests", "someone@example.org", "viewer", [], "a-long-password-1")
    users = await users_db.list_users(runtime.db)
    r = await client.get(f"/admin/users/{users[0].user_id}")
    assert r.status_code == 200, r.text[:300]
    assert "Macro" not in r.text
