"""The audit log: who did what, when, from where, with what outcome."""

from __future__ import annotations

from typing import Any, TypedDict, Unpack

import msgspec

from db.database import Database


class AuditRow(msgspec.Struct, kw_only=True):
    """One audit entry."""

    id: int = 0
    ts: str
    actor: str
    actor_kind: str
    action: str
    target: str
    org_id: str
    outcome: str
    ip: str
    user_agent: str
    detail: str
    diff: str


async def insert_audit(db: Database, row: AuditRow) -> None:
    """Append an entry."""
    await db.execute(
        "INSERT INTO audit_log(ts, actor, actor_kind, action, target, org_id, outcome, ip, user_agent, detail, diff)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            row.ts,
            row.actor,
            row.actor_kind,
            row.action,
            row.target,
            row.org_id,
            row.outcome,
            row.ip,
            row.user_agent[:300],
            row.detail[:2000],
            row.diff[:20000],
        ),
    )


class AuditMatch(TypedDict, total=False):
    """Filters of ``query_audit`` / ``count_audit`` (absent or empty: any); ``action`` may use ``*`` as a wildcard."""

    actor: str | None
    action: str | None
    outcome: str | None
    since: str | None
    until: str | None
    text: str | None


async def query_audit(
    db: Database, *, limit: int = 100, offset: int = 0, **match: Unpack[AuditMatch]
) -> list[AuditRow]:
    """Entries matching the filters, newest first."""
    where, params = _where(match)
    return await db.fetch_all(
        AuditRow, f"SELECT * FROM audit_log {where} ORDER BY id DESC LIMIT ? OFFSET ?", (*params, limit, offset)
    )


async def count_audit(db: Database, **match: Unpack[AuditMatch]) -> int:
    """Number of entries matching the filters."""
    where, params = _where(match)
    return int(await db.scalar(f"SELECT COUNT(*) FROM audit_log {where}", params) or 0)


def _where(match: AuditMatch) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if actor := match.get("actor"):
        clauses.append("actor = ?")
        params.append(actor)
    if action := match.get("action"):
        clauses.append("action LIKE ?")
        params.append(action.replace("*", "%"))
    if outcome := match.get("outcome"):
        clauses.append("outcome = ?")
        params.append(outcome)
    if since := match.get("since"):
        clauses.append("ts >= ?")
        params.append(since)
    if until := match.get("until"):
        clauses.append("ts <= ?")
        params.append(until)
    if text := match.get("text"):
        clauses.append("(target LIKE ? OR detail LIKE ?)")
        params.extend([f"%{text}%", f"%{text}%"])
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), params
