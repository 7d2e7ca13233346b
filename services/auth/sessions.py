"""Server-side sessions: opaque cookie tokens, idle and absolute expiry, revocation.

The cookie holds 32 random bytes; the database holds only their SHA-256, so a copy of
the database cannot be replayed as a session. A new token is issued at every sign-in
(rotation). The CSRF token of a session is an HMAC of its id with the instance secret.
Cookies are ``HttpOnly``, ``SameSite=Strict`` and, over HTTPS, ``Secure`` (``cookie_secure``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:  # the web stack is not imported by the command-line tools that use this module
    from litestar.connection import ASGIConnection

from core.clock import SYSTEM_CLOCK, Clock
from core.contracts.common import new_id
from core.settings import Settings
from db import sessions as sessions_db
from db import users as users_db
from db.database import Database
from db.sessions import SessionRow
from services.audit import Actor, AuditService
from services.auth.principal import Principal, user_principal

COOKIE = "ow_session"
TOUCH_EVERY = 60.0  # seconds: last_seen is written at most this often per session


def cookie_secure(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """Whether cookies get ``Secure``: the request came over HTTPS.

    The scheme is uvicorn's: ``https`` when it serves TLS itself, or when a proxy in
    ``OVERWATCH_TRUSTED_PROXIES`` says ``X-Forwarded-Proto: https`` (from anyone else
    that header is ignored; see ``app/server.py``).
    """
    return connection.scope.get("scheme") == "https"


def token_hash(token: str) -> str:
    """Digest stored for a session token."""
    return hashlib.sha256(token.encode()).hexdigest()


class SessionView(msgspec.Struct, kw_only=True):
    """A session as the sessions page shows it."""

    session_id: str
    user_id: str
    email: str
    created_at: float
    last_seen_at: float
    expires_at: float
    ip: str
    user_agent: str


class SessionService:
    """Start, resolve, list and revoke sessions."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        secret: str,
        clock: Clock = SYSTEM_CLOCK,
        audit: AuditService | None = None,
    ) -> None:
        self.clock = clock
        self.db = db
        self.idle = settings.session_idle_minutes * 60
        self.max_age = settings.session_max_hours * 3600
        self._secret = secret.encode()
        self.audit = audit  # records sessions ended on someone's request (``end``)

    def csrf_token(self, session_id: str) -> str:
        """The CSRF token bound to a session."""
        return hmac.new(self._secret, f"csrf:{session_id}".encode(), hashlib.sha256).hexdigest()[:40]

    def check_csrf(self, session_id: str, token: str) -> bool:
        """Constant-time check of a submitted CSRF token."""
        return bool(token) and hmac.compare_digest(self.csrf_token(session_id), token)

    async def start(self, user_id: str, ip: str, user_agent: str) -> str:
        """Create a session; return the cookie token (shown to the browser only)."""
        token = secrets.token_urlsafe(32)
        now = self.clock.now()
        await sessions_db.insert_session(
            self.db,
            SessionRow(
                session_id=new_id(),
                token_hash=token_hash(token),
                user_id=user_id,
                created_at=now,
                last_seen_at=now,
                expires_at=now + self.max_age,
                ip=ip[:64],
                user_agent=user_agent[:300],
                revoked_at=None,
            ),
        )
        return token

    async def resolve(self, token: str) -> Principal | None:
        """The signed-in user of a cookie token, or ``None`` if expired, revoked or disabled."""
        if not token or len(token) > 100:
            return None
        row = await sessions_db.by_token_hash(self.db, token_hash(token))
        now = self.clock.now()
        if row is None or row.revoked_at is not None or row.expires_at <= now or now - row.last_seen_at > self.idle:
            return None
        user = await users_db.get_user(self.db, row.user_id)
        if user is None or user.disabled:
            return None
        if now - row.last_seen_at > TOUCH_EVERY:
            await sessions_db.touch(self.db, row.session_id, now)
        orgs = await users_db.user_orgs(self.db, user.user_id)
        return user_principal(user.user_id, user.email, user.role, orgs, row.session_id)

    async def revoke(self, session_id: str, user_id: str | None = None) -> bool:
        """End a session (only the owner's when ``user_id`` is given)."""
        return await sessions_db.revoke(self.db, session_id, self.clock.now(), user_id)

    async def end(self, actor: Actor, session_id: str, user_id: str | None = None) -> bool:
        """``revoke`` on someone's request (only the owner's when ``user_id`` is given), audited if it ended."""
        ended = await self.revoke(session_id, user_id)
        if ended and self.audit is not None:
            await self.audit.record(actor, "session.revoke", target=session_id)
        return ended

    async def revoke_all(self, user_id: str) -> int:
        """End every session of a user."""
        return await sessions_db.revoke_all(self.db, user_id, self.clock.now())

    async def active(self, user_id: str | None = None) -> list[SessionView]:
        """Live sessions (of one user, or all)."""
        now = self.clock.now()
        users = {u.user_id: u.email for u in await users_db.list_users(self.db)}
        out = []
        for row in await sessions_db.active_sessions(self.db, now, user_id):
            if now - row.last_seen_at > self.idle:
                continue
            out.append(
                SessionView(
                    session_id=row.session_id,
                    user_id=row.user_id,
                    email=users.get(row.user_id, "?"),
                    created_at=row.created_at,
                    last_seen_at=row.last_seen_at,
                    expires_at=row.expires_at,
                    ip=row.ip,
                    user_agent=row.user_agent,
                )
            )
        return out

    async def purge(self) -> int:
        """Delete long-dead sessions (a day after expiry or revocation)."""
        return await sessions_db.purge_old(self.db, self.clock.now() - 86400)
