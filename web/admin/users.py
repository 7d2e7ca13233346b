"""``/admin/users``: list, create, edit, reset, unlock, disable and delete accounts."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Redirect, Template

from app.runtime import Runtime
from core.errors import AppError
from db import registry as registry_db
from web.admin.forms import read_form
from web.auth.guards import authorize, requires_global_admin

Req = Request[Any, Any, Any]


class NewUserForm(msgspec.Struct, kw_only=True):
    """Create-user form."""

    email: str
    role: str
    name: str = ""
    orgs: list[str] = msgspec.field(default_factory=list)


class EditUserForm(msgspec.Struct, kw_only=True):
    """Edit-user form."""

    role: str
    name: str = ""
    orgs: list[str] = msgspec.field(default_factory=list)
    disabled: str = ""


class UsersController(Controller):
    """User management (admins over every organisation only)."""

    path = "/admin/users"
    include_in_schema = False
    guards = [requires_global_admin()]

    async def _page(self, runtime: Runtime, **extra: Any) -> Template:
        orgs = await registry_db.list_orgs(runtime.db, limit=10_000)
        context = {
            "users": await runtime.services.users.list_all(),
            "orgs": orgs,
            "active": "admin",
            "tab": "users",
            "flash": "",
            "error": "",
            "secret": "",
        }
        context.update(extra)
        return Template("pages/admin/users.html", context=context, status_code=400 if extra.get("error") else 200)

    @get("/")
    async def users(self, runtime: NamedDependency[Runtime]) -> Template:
        """Every account and the create form."""
        return await self._page(runtime)

    @post("/")
    async def create_user(self, request: Req, runtime: NamedDependency[Runtime]) -> Template:
        """Create an account; its generated password is shown once."""
        actor = await authorize(request, None, "admin")
        form = await read_form(request, NewUserForm, lists=("orgs",))
        from services.auth.passwords import generate_password

        password = generate_password()
        try:
            user = await runtime.services.users.create(
                actor.principal, form.email, form.role, form.orgs, password, form.name, actor.origin
            )
        except AppError as exc:
            return await self._page(runtime, error=exc.detail)
        return await self._page(runtime, flash=f"Created {user.email}. Initial password (shown once):", secret=password)

    @get("/{user_id:str}")
    async def user(self, user_id: FromPath[str], runtime: NamedDependency[Runtime]) -> Template:
        """One account's edit page."""
        return await self._edit_page(runtime, user_id)

    async def _edit_page(self, runtime: Runtime, user_id: str, **extra: Any) -> Template:
        user = await runtime.services.users.get(user_id)
        sessions = await runtime.services.sessions.active(user_id)
        orgs = await registry_db.list_orgs(runtime.db, limit=10_000)
        context = {
            "user": user,
            "orgs": orgs,
            "sessions": sessions,
            "active": "admin",
            "tab": "users",
            "flash": "",
            "error": "",
            "secret": "",
        }
        context.update(extra)
        return Template("pages/admin/user.html", context=context)

    @post("/{user_id:str}")
    async def update_user(self, request: Req, user_id: FromPath[str], runtime: NamedDependency[Runtime]) -> Template:
        """Change role, memberships, name, disabled flag."""
        actor = await authorize(request, None, "admin")
        form = await read_form(request, EditUserForm, lists=("orgs",))
        disabled = form.disabled == "on"
        try:
            await runtime.services.users.update(
                actor.principal,
                user_id,
                role=form.role,
                org_ids=form.orgs,
                disabled=disabled,
                name=form.name,
                origin=actor.origin,
            )
        except AppError as exc:
            return await self._edit_page(runtime, user_id, error=exc.detail)
        if disabled:
            await runtime.services.sessions.revoke_all(user_id)
        return await self._edit_page(runtime, user_id, flash="Saved.")

    @post("/{user_id:str}/password")
    async def reset_password(self, request: Req, user_id: FromPath[str], runtime: NamedDependency[Runtime]) -> Template:
        """Generate a new password (shown once) and end the account's sessions."""
        actor = await authorize(request, None, "admin")
        password = await runtime.services.users.reset_password(actor.principal, user_id, None, actor.origin)
        await runtime.services.sessions.revoke_all(user_id)
        return await self._edit_page(runtime, user_id, flash="New password (shown once):", secret=password)

    @post("/{user_id:str}/unlock")
    async def unlock(self, request: Req, user_id: FromPath[str], runtime: NamedDependency[Runtime]) -> Template:
        """Clear a sign-in lockout."""
        actor = await authorize(request, None, "admin")
        await runtime.services.users.unlock(actor.principal, user_id, actor.origin)
        return await self._edit_page(runtime, user_id, flash="Unlocked.")

    @post("/{user_id:str}/delete")
    async def delete_user(self, request: Req, user_id: FromPath[str], runtime: NamedDependency[Runtime]) -> Redirect:
        """Delete an account."""
        actor = await authorize(request, None, "admin")
        if actor.principal.id == user_id:  # type: ignore[union-attr]
            return Redirect(f"/admin/users/{user_id}", status_code=303)
        await runtime.services.users.delete(actor.principal, user_id, actor.origin)
        return Redirect("/admin/users", status_code=303)
