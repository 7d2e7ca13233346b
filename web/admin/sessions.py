"""``/account`` (your sessions, your password) and ``/admin/sessions`` (everyone's)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Template

from app.runtime import Runtime
from core.errors import AppError
from db import users as users_db
from services.auth.passwords import verify_password
from web.admin.forms import read_form
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

    async def _page(self, request: Req, runtime: Runtime, **extra: Any) -> Template:
        principal = principal_of(request)
        sessions = await runtime.services.sessions.active(principal.id) if principal.kind == "user" else []
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
    async def account(self, request: Req, runtime: NamedDependency[Runtime]) -> Template:
        """Your sessions and the change-password form."""
        return await self._page(request, runtime)

    @post("/sessions/{session_id:str}/revoke")
    async def revoke_own(self, request: Req, session_id: FromPath[str], runtime: NamedDependency[Runtime]) -> Template:
        """End one of your sessions."""
        principal = principal_of(request)
        if await runtime.services.sessions.revoke(session_id, principal.id):
            await runtime.services.audit.record(
                principal, "session.revoke", target=session_id, origin=origin_of(request)
            )
        return await self._page(request, runtime, flash="Session ended.")

    @post("/password")
    async def change_password(self, request: Req, runtime: NamedDependency[Runtime]) -> Template:
        """Change your password (needs the current one); ends your other sessions."""
        principal = principal_of(request)
        form = await read_form(request, PasswordForm)
        row = await users_db.get_user(runtime.db, principal.id)
        if row is None or not verify_password(form.current, row.password_hash):
            await runtime.services.audit.record(
                principal,
                "user.change_password",
                outcome="failure",
                origin=origin_of(request),
                detail="wrong current password",
            )
            return await self._page(request, runtime, error="The current password is wrong.")
        if form.new != form.confirm:
            return await self._page(request, runtime, error="The new passwords do not match.")
        try:
            await runtime.services.users.reset_password(principal, principal.id, form.new, origin_of(request))
        except AppError as exc:
            return await self._page(request, runtime, error=exc.detail)
        for session in await runtime.services.sessions.active(principal.id):
            if session.session_id != principal.session_id:
                await runtime.services.sessions.revoke(session.session_id)
        return await self._page(request, runtime, flash="Password changed; your other sessions were ended.")


class SessionsController(Controller):
    """Every active session (admins over every organisation only)."""

    path = "/admin/sessions"
    include_in_schema = False
    guards = [requires_global_admin()]

    @get("/")
    async def sessions(self, runtime: NamedDependency[Runtime]) -> Template:
        """Active sessions of every user."""
        return Template(
            "pages/admin/sessions.html",
            context={
                "sessions": await runtime.services.sessions.active(),
                "active": "admin",
                "tab": "sessions",
                "flash": "",
            },
        )

    @post("/{session_id:str}/revoke")
    async def revoke(self, request: Req, session_id: FromPath[str], runtime: NamedDependency[Runtime]) -> Template:
        """End any session."""
        actor = await authorize(request, None, "admin")
        if await runtime.services.sessions.revoke(session_id):
            await runtime.services.audit.record(actor, "session.revoke", target=session_id)
        return Template(
            "pages/admin/sessions.html",
            context={
                "sessions": await runtime.services.sessions.active(),
                "active": "admin",
                "tab": "sessions",
                "flash": "Session ended.",
            },
        )
