"""Server-side sessions (tokens stored only as digests)."""

from __future__ import annotations

import msgspec

from db.database import Database


class SessionRow(msgspec.Struct, kw_only=True):
    """One session."""

    session_id: str
    token_hash: str
    user_id: str
    created_at: float
    last_seen_at: float
    expires_at: float
    ip: str
    user_agent: str
    revoked_at: float | None


async def insert_session(db: Database, row: SessionRow) -> None:
    """Store a new session."""
    await db.execute(
        "INSERT INTO sessions(session_id, token_hash, user_id, created_at, last_seen_at, expires_at, ip, user_agent)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            row.session_id,
            row.token_hash,
            row.user_id,
            row.created_at,
            row.last_seen_at,
            row.expires_at,
            row.ip,
            row.user_agent,
        ),
    )


async def by_token_hash(db: Database, token_hash: str) -> SessionRow | None:
    """The session of a cookie token digest."""
    return await db.fetch_one(SessionRow, "SELECT * FROM sessions WHERE token_hash = ?", (token_hash,))


async def touch(db: Database, session_id: str, now: float) -> None:
    """Record activity (idle expiry counts from here)."""
    await db.execute("UPDATE sessions SET last_seen_at = ? WHERE session_id = ?", (now, session_id))


async def revoke(db: Database, session_id: str, now: float, user_id: str | None = None) -> bool:
    """End a session (optionally only if it belongs to ``user_id``)."""
    if user_id is None:
        n = await db.execute(
            "UPDATE sessions SET revoked_at = ? WHERE session_id = ? AND revoked_at IS NULL", (now, session_id)
        )
    else:
        n = await db.execute(
            "UPDATE sessions SET revoked_at = ? WHERE session_id = ? AND user_id = ? AND revoked_at IS NULL",
            (now, session_id, user_id),
        )
    return n > 0


async def revoke_all(db: Database, user_id: str, now: float) -> int:
    """End every session of an account."""
    return await db.execute(
        "UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL", (now, user_id)
    )


async def active_sessions(db: Database, now: float, user_id: str | None = None) -> list[SessionRow]:
    """Sessions that are neither revoked nor expired (absolute expiry)."""
    if user_id is None:
        return await db.fetch_all(
            SessionRow,
            "SELECT * FROM sessions WHERE revoked_at IS NULL AND expires_at > ? ORDER BY last_seen_at DESC",
            (now,),
        )
    return await db.fetch_all(
        SessionRow,
        "SELECT * FROM sessions WHERE revoked_at IS NULL AND expires_at > ? AND user_id = ? ORDER BY last_seen_at DESC",
        (now, user_id),
    )


async def purge_old(db: Database, before: float) -> int:
    """Delete sessions that expired or were revoked before ``before``."""
    return await db.execute("DELETE FROM sessions WHERE expires_at < ? OR revoked_at < ?", (before, before))
