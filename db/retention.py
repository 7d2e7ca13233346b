"""Retention: prune old rows in small batches so the single writer is never held long."""

from __future__ import annotations

import time

from db.database import Database

BATCH = 2000

# table → (time column, column is epoch seconds (True) or ISO text (False))
_TABLES: dict[str, tuple[str, bool]] = {
    "tracks": ("ts", True),
    "detections": ("received_at", True),
}


async def prune(db: Database, table: str, older_than_s: float, max_batches: int = 50, now: float | None = None) -> int:
    """Delete rows of ``table`` older than ``older_than_s`` seconds before ``now`` (default: the time now)."""
    column, _epoch = _TABLES[table]
    cutoff = (time.time() if now is None else now) - older_than_s
    deleted = 0
    key = "rowid" if table != "tracks" else "entity_id, ts"
    for _ in range(max_batches):
        n = await db.execute(
            f"DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM {table} WHERE {column} < ? LIMIT {BATCH})",
            (cutoff,),
        )
        deleted += n
        if n < BATCH:
            break
    return deleted


async def prune_closed(db: Database, table: str, time_column: str, status_sql: str, older_than_iso: str) -> int:
    """Delete finished rows (``status_sql`` true) whose ``time_column`` is before ``older_than_iso``."""
    assert table in {"commands", "alerts"}
    return await db.execute(
        f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE {status_sql} AND {time_column} < ?"
        f" LIMIT {BATCH})",
        (older_than_iso,),
    )
