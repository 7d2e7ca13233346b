"""Position tracks: downsampled history per entity (trails on the map, replay)."""

from __future__ import annotations

import aiosqlite
import msgspec

from db.database import Database


class TrackPoint(msgspec.Struct, kw_only=True, array_like=False):
    """One stored position."""

    entity_id: str
    ts: float
    latitude: float
    longitude: float
    altitude: float | None = None
    heading: float | None = None
    speed: float | None = None
    battery: float | None = None


async def insert_points(db: Database, points: list[TrackPoint]) -> None:
    """Store many points in one transaction (duplicates by (entity, ts) are ignored)."""
    if not points:
        return
    await db.executemany(
        "INSERT OR IGNORE INTO tracks(entity_id, ts, latitude, longitude, altitude, heading, speed, battery)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(p.entity_id, p.ts, p.latitude, p.longitude, p.altitude, p.heading, p.speed, p.battery) for p in points],
    )


async def insert_points_in(conn: aiosqlite.Connection, points: list[TrackPoint]) -> None:
    """``insert_points`` inside the caller's transaction (a projection writes points and cursor at once)."""
    await conn.executemany(
        "INSERT OR IGNORE INTO tracks(entity_id, ts, latitude, longitude, altitude, heading, speed, battery)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(p.entity_id, p.ts, p.latitude, p.longitude, p.altitude, p.heading, p.speed, p.battery) for p in points],
    )


async def last_point(db: Database, entity_id: str) -> TrackPoint | None:
    """The newest stored point of an entity."""
    return await db.fetch_one(
        TrackPoint, "SELECT * FROM tracks WHERE entity_id = ? ORDER BY ts DESC LIMIT 1", (entity_id,)
    )


async def recent_track(db: Database, entity_id: str, since: float, limit: int = 2000) -> list[TrackPoint]:
    """Points of one entity newer than ``since`` (epoch s), oldest first, at most ``limit``."""
    rows = await db.fetch_all(
        TrackPoint,
        "SELECT * FROM (SELECT * FROM tracks WHERE entity_id = ? AND ts >= ? ORDER BY ts DESC LIMIT ?) ORDER BY ts",
        (entity_id, since, limit),
    )
    return rows


async def tracks_between(
    db: Database, start: float, end: float, entity_ids: list[str] | None = None, limit: int = 200_000
) -> list[TrackPoint]:
    """All points in ``[start, end]`` (optionally of some entities), in time order (replay)."""
    sql = "SELECT * FROM tracks WHERE ts BETWEEN ? AND ?"
    params: list[object] = [start, end]
    if entity_ids is not None:
        sql += f" AND entity_id IN ({', '.join('?' for _ in entity_ids)})"
        params.extend(entity_ids)
    sql += " ORDER BY ts LIMIT ?"
    params.append(limit)
    return await db.fetch_all(TrackPoint, sql, params)


async def count_points(db: Database, entity_id: str | None = None) -> int:
    """Number of stored points (of one entity or all)."""
    if entity_id is None:
        return int(await db.scalar("SELECT COUNT(*) FROM tracks") or 0)
    return int(await db.scalar("SELECT COUNT(*) FROM tracks WHERE entity_id = ?", (entity_id,)) or 0)
