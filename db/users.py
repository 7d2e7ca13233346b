"""User accounts and their organisation memberships."""

from __future__ import annotations

import aiosqlite
import msgspec

from db.database import Database


class UserRow(msgspec.Struct, kw_only=True):
    """One account."""

    user_id: str
    email: str
    name: str
    password_hash: str
    role: str
    disabled: int
    failed_logins: int
    first_failed_at: float | None
    locked_until: float | None
    last_login_at: str | None
    created_at: str
    updated_at: str


async def get_user(db: Database, user_id: str) -> UserRow | None:
    """One account by id."""
    return await db.fetch_one(UserRow, "SELECT * FROM users WHERE user_id = ?", (user_id,))


async def get_user_by_email(db: Database, email: str) -> UserRow | None:
    """One account by email (case-insensitive)."""
    return await db.fetch_one(UserRow, "SELECT * FROM users WHERE email = ?", (email.strip(),))


async def list_users(db: Database) -> list[UserRow]:
    """Every account, by email."""
    return await db.fetch_all(UserRow, "SELECT * FROM users ORDER BY email")


async def count_users(db: Database) -> int:
    """Number of accounts."""
    return int(await db.scalar("SELECT COUNT(*) FROM users") or 0)


async def insert_user(db: Database, row: UserRow, org_ids: list[str]) -> None:
    """Create an account with its memberships."""

    async def run(conn: aiosqlite.Connection) -> None:
        await conn.execute(
            "INSERT INTO users(user_id, email, name, password_hash, role, disabled, failed_logins, created_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?)",
            (
                row.user_id,
                row.email,
                row.name,
                row.password_hash,
                row.role,
                row.disabled,
                row.created_at,
                row.updated_at,
            ),
        )
        await conn.executemany(
            "INSERT INTO user_orgs(user_id, org_id) VALUES (?, ?)", [(row.user_id, o) for o in sorted(set(org_ids))]
        )

    await db.write(run)


async def update_user(db: Database, user_id: str, **fields: object) -> None:
    """Change columns of one account (column names come from code, never from input)."""
    allowed = {
        "email",
        "name",
        "password_hash",
        "role",
        "disabled",
        "failed_logins",
        "first_failed_at",
        "locked_until",
        "last_login_at",
        "updated_at",
    }
    assert set(fields) <= allowed, set(fields) - allowed
    sets = ", ".join(f"{k} = ?" for k in fields)
    await db.execute(f"UPDATE users SET {sets} WHERE user_id = ?", (*fields.values(), user_id))


async def set_orgs(db: Database, user_id: str, org_ids: list[str]) -> None:
    """Replace an account's memberships."""

    async def run(conn: aiosqlite.Connection) -> None:
        await conn.execute("DELETE FROM user_orgs WHERE user_id = ?", (user_id,))
        await conn.executemany(
            "INSERT INTO user_orgs(user_id, org_id) VALUES (?, ?)", [(user_id, o) for o in sorted(set(org_ids))]
        )

    await db.write(run)


async def user_orgs(db: Database, user_id: str) -> list[str]:
    """Organisations an account belongs to."""
    rows = await db.fetch_rows("SELECT org_id FROM user_orgs WHERE user_id = ? ORDER BY org_id", (user_id,))
    return [r[0] for r in rows]


async def delete_user(db: Database, user_id: str) -> bool:
    """Remove an account (sessions and memberships cascade)."""
    return await db.execute("DELETE FROM users WHERE user_id = ?", (user_id,)) > 0
