"""``/admin/users``: list, create, edit, reset, unlock, disable and delete accounts."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Redirect, Template

from core.errors import AppError
from services.auth.passwords import generate_password
from services.auth.users import UserService
from web.admin.forms import read_form
from web.admin.page import admin_page
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

    async def _page(self, users: UserService, **extra: Any) -> Template:
        data = {"users": await users.list_all(), "orgs": await users.org_choices(), "secret": ""}
        return admin_page("pages/admin/users.html", "users", data, extra)

    @get("/")
    async def users(self, users: NamedDependency[UserService]) -> Template:
        """Every account and the create form."""
        return await self._page(users)

    @post("/")
    async def create_user(self, request: Req, users: NamedDependency[UserService]) -> Template:
        """Create an account; its generated password is shown once."""
        actor = await authorize(request, None, "admin")
        form = await read_form(request, NewUserForm, lists=("orgs",))
        password = generate_password()
        try:
            user = await users.create(
                actor.principal, form.email, form.role, form.orgs, password, form.name, actor.origin
            )
        except AppError as exc:
            return await self._page(users, error=exc.detail)
        return await self._page(users, flash=f"Created {user.email}. Initial password (shown once):", secret=password)

    @get("/{user_id:str}")
    async def user(self, user_id: FromPath[str], users: NamedDependency[UserService]) -> Template:
        """One account's edit page."""
        return await self._edit_page(users, user_id)

    async def _edit_page(self, users: UserService, user_id: str, **extra: Any) -> Template:
        user = await users.get(user_id)
        sessions = await users.sessions_of(user_id)
        data = {"user": user, "orgs": await users.org_choices(), "sessions": sessions, "secret": ""}
        return admin_page("pages/admin/user.html", "users", data, extra, error_status=200)

    @post("/{user_id:str}")
    async def update_user(self, request: Req, user_id: FromPath[str], users: NamedDependency[UserService]) -> Template:
        """Change role, memberships, name, disabled flag."""
        actor = await authorize(request, None, "admin")
        form = await read_form(request, EditUserForm, lists=("orgs",))
        disabled = form.disabled == "on"
        try:
            await users.update(
                actor.principal,
                user_id,
                role=form.role,
                org_ids=form.orgs,
                disabled=disabled,
                name=form.name,
                origin=actor.origin,
            )
        except AppError as exc:
            return await self._edit_page(users, user_id, error=exc.detail)
        if disabled:
            await users.end_sessions(user_id)
        return await self._edit_page(users, user_id, flash="Saved.")

    @post("/{user_id:str}/password")
    async def reset_password(
        self, request: Req, user_id: FromPath[str], users: NamedDependency[UserService]
    ) -> Template:
        """Generate a new password (shown once) and end the account's sessions."""
        actor = await authorize(request, None, "admin")
        password = await users.reset_password(actor.principal, user_id, None, actor.origin)
        await users.end_sessions(user_id)
        return await self._edit_page(users, user_id, flash="New password (shown once):", secret=password)

    @post("/{user_id:str}/unlock")
    async def unlock(self, request: Req, user_id: FromPath[str], users: NamedDependency[UserService]) -> Template:
        """Clear a sign-in lockout."""
        actor = await authorize(request, None, "admin")
        await users.unlock(actor.principal, user_id, actor.origin)
        return await self._edit_page(users, user_id, flash="Unlocked.")

    @post("/{user_id:str}/delete")
    async def delete_user(self, request: Req, user_id: FromPath[str], users: NamedDependency[UserService]) -> Redirect:
        """Delete an account."""
        actor = await authorize(request, None, "admin")
        if actor.principal.id == user_id:  # type: ignore[union-attr]
            return Redirect(f"/admin/users/{user_id}", status_code=303)
        await users.delete(actor.principal, user_id, actor.origin)
        return Redirect("/admin/users", status_code=303)
