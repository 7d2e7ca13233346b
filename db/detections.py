"""Detection history: events as received, newest first per entity."""

from __future__ import annotations

import aiosqlite
import msgspec

from db.database import Database


class DetectionRow(msgspec.Struct, kw_only=True):
    """One stored detection event."""

    id: int = 0
    entity_id: str
    org_id: str
    track_id: str
    label: str
    confidence: float
    threat_level: str
    event_type: str
    bbox: str
    metadata: str
    ts: str
    received_at: float


_INSERT = (
    "INSERT INTO detections(entity_id, org_id, track_id, label, confidence, threat_level, event_type, bbox,"
    " metadata, ts, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


async def insert_detections_in(conn: aiosqlite.Connection, rows: list[DetectionRow]) -> None:
    """``insert_detections`` inside the caller's transaction (a projection writes rows and cursor at once)."""
    await conn.executemany(_INSERT, [_values(r) for r in rows])


def _values(r: DetectionRow) -> tuple[object, ...]:
    return (
        r.entity_id,
        r.org_id,
        r.track_id,
        r.label,
        r.confidence,
        r.threat_level,
        r.event_type,
        r.bbox,
        r.metadata,
        r.ts,
        r.received_at,
    )


async def insert_detections(db: Database, rows: list[DetectionRow]) -> None:
    """Store many detection rows in one transaction."""
    if not rows:
        return
    await db.executemany(_INSERT, [_values(r) for r in rows])


async def list_detections(
    db: Database, entity_id: str, limit: int = 100, offset: int = 0, since: float | None = None
) -> list[DetectionRow]:
    """Detections of one entity, newest first."""
    if since is None:
        return await db.fetch_all(
            DetectionRow,
            "SELECT * FROM detections WHERE entity_id = ? ORDER BY id DESC LIMIT ? OFFSET ?",
            (entity_id, limit, offset),
        )
    return await db.fetch_all(
        DetectionRow,
        "SELECT * FROM detections WHERE entity_id = ? AND received_at >= ? ORDER BY id DESC LIMIT ? OFFSET ?",
        (entity_id, since, limit, offset),
    )


async def count_detections(
    db: Database, entity_id: str | None = None, since: float | None = None, org_ids: list[str] | None = None
) -> int:
    """Number of stored detections (optionally of one entity, since an epoch time, of some organisations)."""
    clauses: list[str] = []
    params: list[object] = []
    if entity_id is not None:
        clauses.append("entity_id = ?")
        params.append(entity_id)
    if org_ids is not None:
        clauses.append(f"org_id IN ({', '.join('?' for _ in org_ids)})" if org_ids else "0")
        params.extend(org_ids)
    if since is not None:
        clauses.append("received_at >= ?")
        params.append(since)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    return int(await db.scalar(f"SELECT COUNT(*) FROM detections {where}", params) or 0)
