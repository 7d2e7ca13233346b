"""Cursors of the per-node projections: the last stream sequence each applied."""

from __future__ import annotations

import time

import aiosqlite

from db.database import Database


async def load_cursor(db: Database, name: str) -> int | None:
    """The projection's last applied stream sequence; ``None`` when it never ran on this database."""
    value = await db.scalar("SELECT seq FROM projection_cursors WHERE name = ?", (name,))
    return None if value is None else int(value)


async def save_cursor(conn: aiosqlite.Connection, name: str, stream: str, seq: int) -> None:
    """Record ``seq`` as applied, inside the caller's transaction (the one that applied it)."""
    await conn.execute(
        "INSERT INTO projection_cursors(name, stream, seq, updated_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT(name) DO UPDATE SET stream = excluded.stream, seq = excluded.seq,"
        " updated_at = excluded.updated_at",
        (name, stream, seq, time.time()),
    )


async def set_cursor(db: Database, name: str, stream: str, seq: int) -> None:
    """Set a cursor on its own (a first start adopting a durable's position, or a rebuild)."""

    async def run(conn: aiosqlite.Connection) -> None:
        await save_cursor(conn, name, stream, seq)

    await db.write(run)


async def list_cursors(db: Database) -> dict[str, tuple[str, int, float]]:
    """``{name: (stream, seq, updated_at)}`` of every projection on this database."""
    rows = await db.fetch_rows("SELECT name, stream, seq, updated_at FROM projection_cursors")
    return {str(r["name"]): (str(r["stream"]), int(r["seq"]), float(r["updated_at"])) for r in rows}
