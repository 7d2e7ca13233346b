"""``/admin/keys``: create (shown once), list and revoke API keys."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Template

from core.errors import AppError
from services.auth.apikeys import ROLE_SCOPES, ApiKeyService
from services.nats_auth import inbox_prefix
from web.admin.forms import read_form
from web.admin.page import admin_page
from web.auth.guards import authorize, requires_global_admin

Req = Request[Any, Any, Any]


class NewKeyForm(msgspec.Struct, kw_only=True):
    """Create-key form."""

    name: str
    role: str
    org_id: str = ""
    nats: str = ""  # "", "device", "reader" ("on", the old checkbox, is a device)
    expires_days: str = ""


class KeysController(Controller):
    """API key management (admins over every organisation only)."""

    path = "/admin/keys"
    include_in_schema = False
    guards = [requires_global_admin()]

    async def _page(self, apikeys: ApiKeyService, **extra: Any) -> Template:
        keys = await apikeys.list_keys(include_revoked=True)
        data = {"keys": keys, "orgs": await apikeys.org_choices(), "created": None, "inbox": "", "nats_url": ""}
        return admin_page("pages/admin/keys.html", "keys", data, extra)

    @get("/")
    async def keys(self, apikeys: NamedDependency[ApiKeyService]) -> Template:
        """Every key and the create form."""
        return await self._page(apikeys)

    @post("/")
    async def create_key(self, request: Req, apikeys: NamedDependency[ApiKeyService]) -> Template:
        """Create a key; the key (and NATS seed) are shown on this response only."""
        actor = await authorize(request, None, "admin")
        form = await read_form(request, NewKeyForm)
        kind = {"on": "device"}.get(form.nats, form.nats)
        try:
            days = float(form.expires_days) if form.expires_days.strip() else None
            created = await apikeys.create(
                actor.principal,
                form.name,
                ROLE_SCOPES.get(form.role, []),
                form.org_id or None,
                days,
                bool(kind),
                actor.origin,
                nats_kind=kind or "device",
            )
        except (AppError, ValueError) as exc:
            return await self._page(apikeys, error=getattr(exc, "detail", str(exc)))
        # The NATS users follow through the key service's listener (services/nats_auth.py).
        return await self._page(apikeys, created=created, inbox=inbox_prefix(created.key_id), nats_url=apikeys.nats_url)

    @post("/{key_id:str}/revoke")
    async def revoke(self, request: Req, key_id: FromPath[str], apikeys: NamedDependency[ApiKeyService]) -> Template:
        """Revoke a key."""
        actor = await authorize(request, None, "admin")
        view = await apikeys.revoke(actor.principal, key_id, actor.origin)
        return await self._page(apikeys, flash=f"Revoked {view.name}.")
