"""The audit service: every change, sign-in, denial, command and key event, with a diff."""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from core.contracts.common import utc_now
from db import audit as audit_db
from db.audit import AuditRow
from db.database import Database
from services.auth.principal import Principal

log = logging.getLogger("overwatch.audit")


class Origin(msgspec.Struct, frozen=True):
    """Where a request came from."""

    ip: str = ""
    user_agent: str = ""


CLI = Origin(ip="local", user_agent="overwatch-cli")
SYSTEM = Origin(ip="local", user_agent="overwatch")


class Actor(msgspec.Struct, frozen=True):
    """Who asked for a change and from where (passed into services that audit)."""

    principal: Principal | str
    origin: Origin = SYSTEM

    @property
    def label(self) -> str:
        """The name recorded as ``issued_by`` / ``created_by``."""
        return self.principal.label if isinstance(self.principal, Principal) else self.principal


SYSTEM_ACTOR = Actor("system")


class AuditFilters(msgspec.Struct, kw_only=True):
    """What to search the audit log for (empty: any); ``action`` may use ``*`` as a wildcard."""

    actor: str = ""
    action: str = ""
    outcome: str = ""
    since: str = ""
    until: str = ""
    text: str = ""

    def kwargs(self) -> dict[str, str | None]:
        """Keyword arguments of ``db.audit.query_audit`` / ``count_audit``."""
        return {k: (v or None) for k, v in msgspec.structs.asdict(self).items()}


def diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, list[Any]]:
    """``{field: [before, after]}`` for every top-level field that changed."""
    before, after = before or {}, after or {}
    return {k: [before.get(k), after.get(k)] for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)}


class AuditService:
    """Appends audit entries; never lets an audit failure break the action itself."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(
        self,
        actor: Principal | str | Actor,
        action: str,
        *,
        target: str = "",
        outcome: str = "success",
        origin: Origin = SYSTEM,
        org_id: str = "",
        detail: str = "",
        changes: dict[str, list[Any]] | None = None,
    ) -> None:
        """Write one entry (``actor`` is a principal, an ``Actor`` or a plain label such as an email)."""
        if isinstance(actor, Actor):
            origin = actor.origin
            actor = actor.principal
        if isinstance(actor, Principal):
            label, kind = actor.label, actor.kind
        else:
            label, kind = actor, "user"
        row = AuditRow(
            ts=utc_now(),
            actor=label,
            actor_kind=kind,
            action=action,
            target=target,
            org_id=org_id,
            outcome=outcome,
            ip=origin.ip,
            user_agent=origin.user_agent,
            detail=detail,
            diff=msgspec.json.encode(changes).decode() if changes else "",
        )
        try:
            await audit_db.insert_audit(self.db, row)
        except Exception:
            log.exception("audit write failed: %s %s %s", label, action, target)

    async def search(self, filters: AuditFilters, limit: int, offset: int = 0) -> list[AuditRow]:
        """Entries matching ``filters``, newest first."""
        return await audit_db.query_audit(self.db, limit=limit, offset=offset, **filters.kwargs())

    async def count(self, filters: AuditFilters) -> int:
        """Number of entries matching ``filters``."""
        return await audit_db.count_audit(self.db, **filters.kwargs())
