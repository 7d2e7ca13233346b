"""Command rows: what was sent to which entity and how far it got."""

from __future__ import annotations

import aiosqlite
import msgspec

from core.contracts.commands import RANK, TERMINAL
from db.database import Database


class CommandRow(msgspec.Struct, kw_only=True):
    """One command and its lifecycle state."""

    command_id: str
    org_id: str
    entity_id: str
    command: str
    params: str
    status: str
    detail: str
    issued_by: str
    issued_at: str
    updated_at: str
    expires_at: str
    delivered_at: str | None = None

    @property
    def params_dict(self) -> dict[str, object]:
        """The command's parameters."""
        value = msgspec.json.decode(self.params)
        return value if isinstance(value, dict) else {}


_INSERT = (
    "INSERT OR IGNORE INTO commands(command_id, org_id, entity_id, command, params, status, detail, issued_by,"
    " issued_at, updated_at, expires_at, delivered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _values(row: CommandRow) -> tuple[object, ...]:
    return (
        row.command_id,
        row.org_id,
        row.entity_id,
        row.command,
        row.params,
        row.status,
        row.detail,
        row.issued_by,
        row.issued_at,
        row.updated_at,
        row.expires_at,
        row.delivered_at,
    )


async def insert_command(db: Database, row: CommandRow) -> bool:
    """Insert a command (False if the id exists)."""
    n = await db.execute(
        _INSERT,
        _values(row),
    )
    return n > 0


async def get_command(db: Database, command_id: str) -> CommandRow | None:
    """One command by id."""
    return await db.fetch_one(CommandRow, "SELECT * FROM commands WHERE command_id = ?", (command_id,))


async def advance(db: Database, command_id: str, status: str, detail: str, when: str) -> CommandRow | None:
    """Move a command forward to ``status``; return the updated row, or None if that is not a move forward.

    Terminal states never change and a command never moves backwards (a late
    ``accepted`` after ``completed`` is ignored). An ``accepted`` command may take a
    new detail while it stays accepted: progress reports (MAVLink's ``IN_PROGRESS 40%``).
    """

    async def run(conn: aiosqlite.Connection) -> CommandRow | None:
        return await advance_in(conn, command_id, status, detail, when)

    return await db.write(run)


async def advance_in(
    conn: aiosqlite.Connection,
    command_id: str,
    status: str,
    detail: str,
    when: str,
    *,
    overrides_expired: bool = False,
) -> CommandRow | None:
    """``advance`` inside the caller's transaction (a projection applies a batch and its cursor at once).

    ``overrides_expired``: the word of the side that owns the entity (an edge box) replaces
    an expiry this side only inferred because it heard nothing (``docs/scale-out.md``).
    """
    rows = list(await conn.execute_fetchall("SELECT * FROM commands WHERE command_id = ?", (command_id,)))
    if not rows:
        return None
    row = msgspec.convert(dict(rows[0]), CommandRow)
    progress = status == row.status == "accepted" and bool(detail) and detail != row.detail
    inferred = overrides_expired and row.status == "expired" and status != "expired"
    if not inferred and (row.status in TERMINAL or (RANK[status] <= RANK[row.status] and not progress)):
        return None
    delivered = row.delivered_at or (when if status != "expired" else None)
    await conn.execute(
        "UPDATE commands SET status = ?, detail = ?, updated_at = ?, delivered_at = ? WHERE command_id = ?",
        (status, detail or row.detail, when, delivered, command_id),
    )
    return msgspec.structs.replace(
        row, status=status, detail=detail or row.detail, updated_at=when, delivered_at=delivered
    )


async def insert_in(conn: aiosqlite.Connection, row: CommandRow) -> bool:
    """``insert_command`` inside the caller's transaction (False if the id exists)."""
    cursor = await conn.execute(
        _INSERT,
        _values(row),
    )
    return cursor.rowcount > 0


async def get_in(conn: aiosqlite.Connection, command_id: str) -> CommandRow | None:
    """One command by id, read inside the caller's transaction."""
    rows = list(await conn.execute_fetchall("SELECT * FROM commands WHERE command_id = ?", (command_id,)))
    return msgspec.convert(dict(rows[0]), CommandRow) if rows else None


async def list_commands(db: Database, entity_id: str, limit: int = 50, offset: int = 0) -> list[CommandRow]:
    """Commands of one entity, newest first."""
    return await db.fetch_all(
        CommandRow,
        "SELECT * FROM commands WHERE entity_id = ? ORDER BY issued_at DESC, rowid DESC LIMIT ? OFFSET ?",
        (entity_id, limit, offset),
    )


async def count_commands(db: Database, entity_id: str) -> int:
    """Number of commands sent to one entity."""
    return int(await db.scalar("SELECT COUNT(*) FROM commands WHERE entity_id = ?", (entity_id,)) or 0)


async def queued_for(db: Database, entity_id: str) -> list[CommandRow]:
    """Undelivered commands of one entity, oldest first."""
    return await db.fetch_all(
        CommandRow,
        "SELECT * FROM commands WHERE entity_id = ? AND status = 'queued' ORDER BY issued_at, rowid",
        (entity_id,),
    )


async def due_to_expire(db: Database, now_iso: str) -> list[CommandRow]:
    """Open commands whose expiry time has passed."""
    return await db.fetch_all(
        CommandRow,
        "SELECT * FROM commands WHERE status IN ('queued', 'delivered', 'accepted') AND expires_at < ?",
        (now_iso,),
    )
