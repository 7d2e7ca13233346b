"""Signing in and out: rate limit per address, password check with lockout, session rotation, audit."""

from __future__ import annotations

from services.audit import AuditService, Origin
from services.auth.principal import Principal
from services.auth.ratelimit import IpLimiter
from services.auth.sessions import SessionService
from services.auth.users import LoginRefused, UserService


class SignInRefused(Exception):
    """A refused sign-in: the sentence the form shows and the HTTP status it answers with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class SignInService:
    """Starts and ends browser sessions."""

    def __init__(self, users: UserService, sessions: SessionService, limiter: IpLimiter, audit: AuditService) -> None:
        self.users = users
        self.sessions = sessions
        self.limiter = limiter
        self.audit = audit

    async def sign_in(self, email: str, password: str, origin: Origin, previous_token: str = "") -> str:
        """Check the credentials and start a fresh session; return its cookie token.

        ``SignInRefused`` (429) when the address made too many attempts, (401) with one
        message for unknown, wrong, locked and disabled alike. The session of
        ``previous_token`` (the cookie sent with the form, if any) ends here: rotation.
        """
        if not self.limiter.allow(origin.ip):
            await self.audit.record(
                email or "?",
                "auth.login",
                outcome="denied",
                origin=origin,
                detail="too many attempts from this address",
            )
            raise SignInRefused("Too many sign-in attempts from this address. Wait a few minutes.", 429)
        try:
            user = await self.users.authenticate(email, password, origin)
        except LoginRefused as exc:
            raise SignInRefused(exc.message, 401) from None
        if previous_token:
            previous = await self.sessions.resolve(previous_token)
            if previous is not None:
                await self.sessions.revoke(previous.session_id)
        return await self.sessions.start(user.user_id, origin.ip, origin.user_agent)

    async def sign_out(self, principal: Principal, origin: Origin) -> None:
        """End the caller's session (nothing for API keys and anonymous callers)."""
        if principal.session_id:
            await self.sessions.revoke(principal.session_id)
            await self.audit.record(principal, "auth.logout", origin=origin)
