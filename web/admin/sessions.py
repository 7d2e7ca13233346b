"""``/account`` (your sessions, your password) and ``/admin/sessions`` (everyone's)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Template

from core.errors import AppError
from services.auth.sessions import SessionService
from services.auth.users import UserService
from web.admin.forms import read_form
from web.admin.page import admin_page
from web.auth.guards import authorize, origin_of, principal_of, requires, requires_global_admin

Req = Request[Any, Any, Any]


class PasswordForm(msgspec.Struct, kw_only=True):
    """Change-password form."""

    current: str
    new: str
    confirm: str


class AccountController(Controller):
    """The signed-in user's own sessions and password."""

    path = "/account"
    include_in_schema = False
    guards = [requires("read")]

    async def _page(self, request: Req, users: UserService, **extra: Any) -> Template:
        principal = principal_of(request)
        sessions = await users.sessions_of(principal.id) if principal.kind == "user" else []
        context = {
            "sessions": sessions,
            "current_session": principal.session_id,
            "active": "",
            "flash": "",
            "error": "",
        }
        context.update(extra)
        return Template("pages/account.html", context=context, status_code=400 if extra.get("error") else 200)

    @get("/")
    async def account(self, request: Req, users: NamedDependency[UserService]) -> Template:
        """Your sessions and the change-password form."""
        return await self._page(request, users)

    @post("/sessions/{session_id:str}/revoke")
    async def revoke_own(
        self, request: Req, session_id: FromPath[str], users: NamedDependency[UserService]
    ) -> Template:
        """End one of your sessions."""
        await users.end_own_session(principal_of(request), session_id, origin_of(request))
        return await self._page(request, users, flash="Session ended.")

    @post("/password")
    async def change_password(self, request: Req, users: NamedDependency[UserService]) -> Template:
        """Change your password (needs the current one); ends your other sessions."""
        form = await read_form(request, PasswordForm)
        try:
            await users.change_own_password(
                principal_of(request), form.current, form.new, form.confirm, origin_of(request)
            )
        except AppError as exc:
            return await self._page(request, users, error=exc.detail)
        return await self._page(request, users, flash="Password changed; your other sessions were ended.")


class SessionsController(Controller):
    """Every active session (admins over every organisation only)."""

    path = "/admin/sessions"
    include_in_schema = False
    guards = [requires_global_admin()]

    @get("/")
    async def sessions(self, sessions: NamedDependency[SessionService]) -> Template:
        """Active sessions of every user."""
        return admin_page("pages/admin/sessions.html", "sessions", {"sessions": await sessions.active()}, {})

    @post("/{session_id:str}/revoke")
    async def revoke(
        self, request: Req, session_id: FromPath[str], sessions: NamedDependency[SessionService]
    ) -> Template:
        """End any session."""
        actor = await authorize(request, None, "admin")
        await sessions.end(actor, session_id)
        data = {"sessions": await sessions.active()}
        return admin_page("pages/admin/sessions.html", "sessions", data, {"flash": "Session ended."})
