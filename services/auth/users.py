"""Local accounts: create, authenticate (with lockout), reset, disable, bootstrap the first admin."""

from __future__ import annotations

import asyncio
import logging

import msgspec

from core.clock import SYSTEM_CLOCK, Clock
from core.contracts.common import new_id, utc_now
from core.errors import Conflict, Invalid, NotFound
from core.settings import Settings
from db import users as users_db
from db.database import Database
from db.registry import OrgRow
from db.users import UserRow
from services.audit import CLI, Actor, AuditService, Origin, diff
from services.auth.passwords import DUMMY_HASH, check_strength, generate_password, hash_password, verify_password
from services.auth.principal import ROLES, Principal
from services.auth.sessions import SessionService, SessionView
from services.registry import org_choices

log = logging.getLogger("overwatch.auth")

FAILURE_WINDOW = 60.0  # seconds: failures counted towards a lockout within this window
# The one message for every refused sign-in: it must not tell whether the account exists,
# is locked or is disabled (the audit log records which).
REFUSED = "Wrong email or password, or the account is locked or disabled."


async def _verify(password: str, stored: str) -> bool:
    # scrypt takes ~40 ms of CPU: off the event loop, so sign-ins do not stall every page.
    return await asyncio.to_thread(verify_password, password, stored)


class LoginRefused(Exception):
    """Sign-in failed; ``message`` is safe to show (it never says whether the account exists, is locked or disabled)."""

    def __init__(self, message: str, locked: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.locked = locked


class UserView(msgspec.Struct, kw_only=True):
    """An account as the admin pages and API show it (no password hash)."""

    user_id: str
    email: str
    name: str
    role: str
    disabled: bool
    locked: bool
    org_ids: list[str]
    last_login_at: str | None
    created_at: str


class UserService:
    """Account management and password sign-in."""

    def __init__(
        self,
        db: Database,
        audit: AuditService,
        settings: Settings,
        clock: Clock = SYSTEM_CLOCK,
        sessions: SessionService | None = None,
    ) -> None:
        self.clock = clock
        self.db = db
        self.audit = audit
        self.settings = settings
        self.sessions = sessions  # an account's sessions end when it is disabled or its password changes

    async def view(self, row: UserRow) -> UserView:
        """Public view of an account."""
        return UserView(
            user_id=row.user_id,
            email=row.email,
            name=row.name,
            role=row.role,
            disabled=bool(row.disabled),
            locked=bool(row.locked_until and row.locked_until > self.clock.now()),
            org_ids=await users_db.user_orgs(self.db, row.user_id),
            last_login_at=row.last_login_at,
            created_at=row.created_at,
        )

    async def list_all(self) -> list[UserView]:
        """Every account."""
        return [await self.view(r) for r in await users_db.list_users(self.db)]

    async def get(self, user_id: str) -> UserView:
        """One account."""
        row = await users_db.get_user(self.db, user_id)
        if row is None:
            raise NotFound(f"user {user_id} not found")
        return await self.view(row)

    async def create(
        self,
        actor: Principal | str,
        email: str,
        role: str,
        org_ids: list[str],
        password: str,
        name: str = "",
        origin: Origin = CLI,
    ) -> UserView:
        """Create an account; 409 if the email is taken."""
        email = email.strip().lower()
        if "@" not in email or len(email) > 254 or any(c.isspace() for c in email):
            raise Invalid(f"not an email address: {email!r}")
        if role not in ROLES:
            raise Invalid(f"role must be one of {', '.join(ROLES)}")
        try:
            check_strength(password)
        except ValueError as exc:
            raise Invalid(str(exc)) from None
        if await users_db.get_user_by_email(self.db, email) is not None:
            raise Conflict(f"a user with email {email} already exists")
        now = utc_now()
        row = UserRow(
            user_id=new_id(),
            email=email,
            name=name[:100],
            password_hash=hash_password(password),
            role=role,
            disabled=0,
            failed_logins=0,
            first_failed_at=None,
            locked_until=None,
            last_login_at=None,
            created_at=now,
            updated_at=now,
        )
        await users_db.insert_user(self.db, row, org_ids)
        await self.audit.record(
            actor,
            "user.create",
            target=email,
            origin=origin,
            changes={"role": [None, role], "org_ids": [None, sorted(org_ids)]},
        )
        return await self.view(row)

    async def update(
        self,
        actor: Principal | str,
        user_id: str,
        *,
        role: str | None = None,
        org_ids: list[str] | None = None,
        disabled: bool | None = None,
        name: str | None = None,
        origin: Origin = CLI,
    ) -> UserView:
        """Change role, memberships, name or the disabled flag."""
        row = await users_db.get_user(self.db, user_id)
        if row is None:
            raise NotFound(f"user {user_id} not found")
        before = msgspec.structs.asdict(await self.view(row))
        fields: dict[str, object] = {}
        if role is not None:
            if role not in ROLES:
                raise Invalid(f"role must be one of {', '.join(ROLES)}")
            fields["role"] = role
        if disabled is not None:
            fields["disabled"] = int(disabled)
        if name is not None:
            fields["name"] = name[:100]
        if fields:
            fields["updated_at"] = utc_now()
            await users_db.update_user(self.db, user_id, **fields)
        if org_ids is not None:
            await users_db.set_orgs(self.db, user_id, org_ids)
        after = await self.get(user_id)
        changes = diff(before, msgspec.structs.asdict(after))
        if changes:
            await self.audit.record(actor, "user.update", target=row.email, origin=origin, changes=changes)
        return after

    async def reset_password(
        self, actor: Principal | str, user_id: str, password: str | None = None, origin: Origin = CLI
    ) -> str:
        """Set a new password (generated when not given); also clears a lockout. Returns it."""
        row = await users_db.get_user(self.db, user_id)
        if row is None:
            raise NotFound(f"user {user_id} not found")
        password = password or generate_password()
        try:
            check_strength(password)
        except ValueError as exc:
            raise Invalid(str(exc)) from None
        await users_db.update_user(
            self.db,
            user_id,
            password_hash=hash_password(password),
            failed_logins=0,
            locked_until=None,
            first_failed_at=None,
            updated_at=utc_now(),
        )
        await self.audit.record(actor, "user.reset_password", target=row.email, origin=origin)
        return password

    async def unlock(self, actor: Principal | str, user_id: str, origin: Origin = CLI) -> None:
        """Clear a lockout."""
        row = await users_db.get_user(self.db, user_id)
        if row is None:
            raise NotFound(f"user {user_id} not found")
        await users_db.update_user(self.db, user_id, failed_logins=0, locked_until=None, first_failed_at=None)
        await self.audit.record(actor, "user.unlock", target=row.email, origin=origin, detail="unlocked by admin")

    async def delete(self, actor: Principal | str, user_id: str, origin: Origin = CLI) -> None:
        """Delete an account."""
        row = await users_db.get_user(self.db, user_id)
        if row is None:
            raise NotFound(f"user {user_id} not found")
        await users_db.delete_user(self.db, user_id)
        await self.audit.record(actor, "user.delete", target=row.email, origin=origin)

    async def org_choices(self) -> list[OrgRow]:
        """The organisations an account can be a member of."""
        return await org_choices(self.db)

    def _sessions(self) -> SessionService:
        if self.sessions is None:
            raise RuntimeError("UserService was built without a SessionService")
        return self.sessions

    async def sessions_of(self, user_id: str) -> list[SessionView]:
        """The account's live sessions."""
        return await self._sessions().active(user_id)

    async def end_sessions(self, user_id: str) -> int:
        """End every session of the account (after disabling it or resetting its password)."""
        return await self._sessions().revoke_all(user_id)

    async def end_own_session(self, principal: Principal, session_id: str, origin: Origin) -> bool:
        """The signed-in user ends one of their own sessions (audited)."""
        return await self._sessions().end(Actor(principal, origin), session_id, principal.id)

    async def change_own_password(
        self, principal: Principal, current: str, new: str, confirm: str, origin: Origin
    ) -> None:
        """The signed-in user changes their password; their other sessions end.

        ``Invalid`` with the sentence the account page shows when the current password is
        wrong (audited as a failure) or the two new ones differ.
        """
        row = await users_db.get_user(self.db, principal.id)
        if row is None or not await _verify(current, row.password_hash):
            await self.audit.record(
                principal, "user.change_password", outcome="failure", origin=origin, detail="wrong current password"
            )
            raise Invalid("The current password is wrong.")
        if new != confirm:
            raise Invalid("The new passwords do not match.")
        await self.reset_password(principal, principal.id, new, origin)
        for session in await self._sessions().active(principal.id):
            if session.session_id != principal.session_id:
                await self._sessions().revoke(session.session_id)

    async def authenticate(self, email: str, password: str, origin: Origin) -> UserRow:
        """Check a password with per-account lockout; raise ``LoginRefused`` on failure.

        After ``OVERWATCH_LOGIN_MAX_FAILURES`` wrong passwords within a minute the account
        locks for ``OVERWATCH_LOCKOUT_MINUTES``; while locked, attempts are refused
        without checking the password. Each attempt is counted atomically *before* its
        password is checked (``db.users.reserve_attempt``), so concurrent attempts cannot
        check more passwords than the budget allows. Unknown, locked and disabled accounts
        get the same message (and cost the same hash) as a wrong password; the audit log
        keeps the real reason.
        """
        email = email.strip().lower()[:254]
        now = self.clock.now()
        lock_seconds = self.settings.lockout_minutes * 60
        max_failures = self.settings.login_max_failures
        attempt = await users_db.reserve_attempt(self.db, email, now, FAILURE_WINDOW, max_failures, lock_seconds)
        row = attempt.row
        if row is None:
            await _verify(password, DUMMY_HASH)
            await self.audit.record(
                email or "?", "auth.login", outcome="failure", origin=origin, detail="unknown account"
            )
            raise LoginRefused(REFUSED)
        if attempt.lock_expired:
            await self.audit.record(row.email, "user.unlock", target=row.email, origin=origin, detail="lockout expired")
        if attempt.verdict == "locked":
            await _verify(password, DUMMY_HASH)  # the same cost as a checked password; the real one is not tried
            await self.audit.record(
                row.email, "auth.login", outcome="denied", origin=origin, detail="account locked; password not checked"
            )
            if attempt.locked_now:
                await self._locked(row.email, attempt.count, origin)
            raise LoginRefused(REFUSED, locked=True)
        if not await _verify(password, row.password_hash):
            await self.audit.record(
                row.email,
                "auth.login",
                outcome="failure",
                origin=origin,
                detail=f"wrong password ({attempt.count} in the last minute)",
            )
            locked = await users_db.login_failed(
                self.db, row.user_id, attempt.count, max_failures, self.clock.now(), lock_seconds
            )
            if locked:
                await self._locked(row.email, attempt.count, origin)
            raise LoginRefused(REFUSED)
        if row.disabled:
            await self.audit.record(row.email, "auth.login", outcome="denied", origin=origin, detail="account disabled")
            raise LoginRefused(REFUSED)
        await users_db.login_succeeded(self.db, row.user_id, utc_now())
        await self.audit.record(row.email, "auth.login", origin=origin)
        return row

    async def _locked(self, email: str, count: int, origin: Origin) -> None:
        log.warning("account %s locked after %d failed sign-ins", email, count)
        await self.audit.record(
            email,
            "user.lock",
            target=email,
            outcome="success",
            origin=origin,
            detail=f"locked for {self.settings.lockout_minutes:.0f} min after {count} failures",
        )

    async def bootstrap_admin(self) -> str | None:
        """On first run create the admin account; return a generated password to print once."""
        if await users_db.count_users(self.db) > 0:
            return None
        password = self.settings.admin_password or generate_password()
        await self.create("system", self.settings.admin_email, "admin", [], password, name="Administrator")
        return None if self.settings.admin_password else password
