"""``/admin/keys``: create (shown once), list and revoke API keys."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Template

from app.runtime import Runtime
from core.errors import AppError
from db import registry as registry_db
from services.auth.apikeys import ROLE_SCOPES
from services.nats_auth import inbox_prefix
from web.admin.forms import read_form
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

    async def _page(self, runtime: Runtime, **extra: Any) -> Template:
        context = {
            "keys": await runtime.services.apikeys.list_keys(include_revoked=True),
            "orgs": await registry_db.list_orgs(runtime.db, limit=10_000),
            "active": "admin",
            "tab": "keys",
            "flash": "",
            "error": "",
            "created": None,
            "inbox": "",
            "nats_url": "",
        }
        context.update(extra)
        return Template("pages/admin/keys.html", context=context, status_code=400 if extra.get("error") else 200)

    @get("/")
    async def keys(self, runtime: NamedDependency[Runtime]) -> Template:
        """Every key and the create form."""
        return await self._page(runtime)

    @post("/")
    async def create_key(self, request: Req, runtime: NamedDependency[Runtime]) -> Template:
        """Create a key; the key (and NATS seed) are shown on this response only."""
        actor = await authorize(request, None, "admin")
        form = await read_form(request, NewKeyForm)
        kind = {"on": "device"}.get(form.nats, form.nats)
        try:
            days = float(form.expires_days) if form.expires_days.strip() else None
            created = await runtime.services.apikeys.create(
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
            return await self._page(runtime, error=getattr(exc, "detail", str(exc)))
        # The NATS users follow through the key service's listener (services/nats_auth.py).
        server = runtime.nats_server
        return await self._page(
            runtime,
            created=created,
            inbox=inbox_prefix(created.key_id),
            nats_url=server.url if server else ", ".join(runtime.settings.nats_servers),
        )

    @post("/{key_id:str}/revoke")
    async def revoke(self, request: Req, key_id: FromPath[str], runtime: NamedDependency[Runtime]) -> Template:
        """Revoke a key."""
        actor = await authorize(request, None, "admin")
        view = await runtime.services.apikeys.revoke(actor.principal, key_id, actor.origin)
        return await self._page(runtime, flash=f"Revoked {view.name}.")
