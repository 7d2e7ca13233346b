"""Metric samples behind the metrics page: ``(series, ts, value)`` rows, pruned by age."""

from __future__ import annotations

from collections.abc import Iterable

from db.database import Database

BATCH = 5000


async def insert_samples(db: Database, ts: float, values: Iterable[tuple[str, float]]) -> None:
    """Store one sampling round (all series at the same timestamp)."""
    await db.executemany(
        "INSERT OR REPLACE INTO metric_samples(series, ts, value) VALUES (?, ?, ?)",
        [(series, ts, value) for series, value in values],
    )


async def series_since(db: Database, since: float) -> dict[str, list[tuple[float, float]]]:
    """Every series' ``(ts, value)`` points newer than ``since``, oldest first."""
    rows = await db.fetch_rows(
        "SELECT series, ts, value FROM metric_samples WHERE ts >= ? ORDER BY series, ts", (since,)
    )
    out: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        out.setdefault(row[0], []).append((float(row[1]), float(row[2])))
    return out


async def prune_samples(db: Database, older_than: float, max_batches: int = 20) -> int:
    """Delete samples older than the epoch time ``older_than`` in small batches."""
    deleted = 0
    for _ in range(max_batches):
        n = await db.execute(
            "DELETE FROM metric_samples WHERE (series, ts) IN"
            f" (SELECT series, ts FROM metric_samples WHERE ts < ? LIMIT {BATCH})",
            (older_than,),
        )
        deleted += n
        if n < BATCH:
            break
    return deleted
