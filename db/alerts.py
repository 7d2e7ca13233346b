"""Alert rows: threat, offline, battery and rule alerts with acknowledgement."""

from __future__ import annotations

from typing import Any

import msgspec

from db.database import Database


class AlertFields(msgspec.Struct, kw_only=True):
    """What an alert is, stored or returned by the API (``AlertRow``, ``web.api.schemas.AlertView``)."""

    alert_id: str
    kind: str
    severity: str
    org_id: str
    entity_id: str
    track_id: str
    title: str
    reason: str
    status: str
    acknowledged_by: str | None
    acknowledged_at: str | None
    created_at: str
    updated_at: str
    cleared_at: str | None


class AlertRow(AlertFields, kw_only=True):
    """One alert as stored (``data`` is JSON text)."""

    data: str


async def get_alert(db: Database, alert_id: str) -> AlertRow | None:
    """One alert by id."""
    return await db.fetch_one(AlertRow, "SELECT * FROM alerts WHERE alert_id = ?", (alert_id,))


async def save_alert(db: Database, row: AlertRow) -> None:
    """Insert or replace an alert row."""
    await db.execute(
        "INSERT OR REPLACE INTO alerts(alert_id, kind, severity, org_id, entity_id, track_id, title, reason, status,"
        " acknowledged_by, acknowledged_at, created_at, updated_at, cleared_at, data)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            row.alert_id,
            row.kind,
            row.severity,
            row.org_id,
            row.entity_id,
            row.track_id,
            row.title,
            row.reason,
            row.status,
            row.acknowledged_by,
            row.acknowledged_at,
            row.created_at,
            row.updated_at,
            row.cleared_at,
            row.data,
        ),
    )


async def archive_alert(db: Database, alert_id: str, archived_id: str, now: str) -> None:
    """Move an alert to ``archived_id`` (replacing an older archive), cleared if it was active."""

    async def run(conn: Any) -> None:
        await conn.execute("DELETE FROM alerts WHERE alert_id = ?", (archived_id,))
        await conn.execute(
            "UPDATE alerts SET alert_id = ?, updated_at = ?,"
            " cleared_at = CASE WHEN status = 'active' THEN ? ELSE cleared_at END,"
            " status = CASE WHEN status = 'active' THEN 'cleared' ELSE status END"
            " WHERE alert_id = ?",
            (archived_id, now, now, alert_id),
        )

    await db.write(run)


async def list_alerts(
    db: Database,
    *,
    status: str | None = None,
    entity_id: str | None = None,
    kind: str | None = None,
    org_ids: list[str] | None = None,
    unacknowledged: bool = False,
    limit: int = 100,
    offset: int = 0,
) -> list[AlertRow]:
    """Alerts, newest first, filtered."""
    where, params = _where(status, entity_id, kind, org_ids, unacknowledged)
    return await db.fetch_all(
        AlertRow, f"SELECT * FROM alerts {where} ORDER BY updated_at DESC LIMIT ? OFFSET ?", (*params, limit, offset)
    )


async def count_alerts(
    db: Database,
    *,
    status: str | None = None,
    entity_id: str | None = None,
    kind: str | None = None,
    org_ids: list[str] | None = None,
    unacknowledged: bool = False,
) -> int:
    """Number of alerts matching the same filters as ``list_alerts``."""
    where, params = _where(status, entity_id, kind, org_ids, unacknowledged)
    return int(await db.scalar(f"SELECT COUNT(*) FROM alerts {where}", params) or 0)


def _where(
    status: str | None, entity_id: str | None, kind: str | None, org_ids: list[str] | None, unacknowledged: bool
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (("status", status), ("entity_id", entity_id), ("kind", kind)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if org_ids is not None:
        clauses.append(f"org_id IN ({', '.join('?' for _ in org_ids)})" if org_ids else "0")
        params.extend(org_ids)
    if unacknowledged:
        clauses.append("acknowledged_at IS NULL")
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), params
