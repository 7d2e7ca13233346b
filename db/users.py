"""User accounts and their organisation memberships."""

from __future__ import annotations

from typing import Literal

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


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    """A sign-in attempt as reserved against the account's failure budget (see ``reserve_attempt``)."""

    row: UserRow | None  # None: no such account
    verdict: Literal["unknown", "locked", "check"]  # check: the password may be verified
    count: int  # failures in the window including this attempt (until it turns out right)
    lock_expired: bool  # an expired lock was cleared by this attempt
    locked_now: bool  # this attempt found the budget spent and locked the account


async def reserve_attempt(
    db: Database, email: str, now: float, window: float, max_failures: int, lock_seconds: float
) -> Attempt:
    """Count a sign-in attempt as a failure *before* its password is checked, atomically.

    One ``BEGIN IMMEDIATE`` transaction on the single writer reads the account and bumps its
    failure counter, so concurrent attempts each get their own number: at most
    ``max_failures`` attempts per window ever reach a password check; the next one locks
    the account and is refused unchecked. A right password resets the counter afterwards
    (``login_succeeded``); a wrong one leaves it counted (``login_failed`` may lock).
    """

    async def run(conn: aiosqlite.Connection) -> Attempt:
        cur = await conn.execute("SELECT * FROM users WHERE email = ?", (email,))
        found = await cur.fetchone()
        if found is None:
            return Attempt(row=None, verdict="unknown", count=0, lock_expired=False, locked_now=False)
        row = msgspec.convert(dict(found), UserRow, strict=False)
        if row.locked_until and row.locked_until > now:
            return Attempt(row=row, verdict="locked", count=row.failed_logins, lock_expired=False, locked_now=False)
        expired = bool(row.locked_until)
        in_window = not expired and row.first_failed_at is not None and now - row.first_failed_at < window
        count = row.failed_logins + 1 if in_window else 1
        first = row.first_failed_at if in_window else now
        if count > max_failures:
            await conn.execute(
                "UPDATE users SET failed_logins = ?, first_failed_at = ?, locked_until = ? WHERE user_id = ?",
                (count, first, now + lock_seconds, row.user_id),
            )
            return Attempt(row=row, verdict="locked", count=count, lock_expired=expired, locked_now=True)
        await conn.execute(
            "UPDATE users SET failed_logins = ?, first_failed_at = ?, locked_until = NULL WHERE user_id = ?",
            (count, first, row.user_id),
        )
        return Attempt(row=row, verdict="check", count=count, lock_expired=expired, locked_now=False)

    return await db.write(run)


async def login_failed(
    db: Database, user_id: str, count: int, max_failures: int, now: float, lock_seconds: float
) -> bool:
    """A checked password was wrong: lock when it used the last of the budget.

    True if this call locked the account (False when it was not the last, or a concurrent
    attempt over the budget locked it first).
    """
    if count < max_failures:
        return False
    changed = await db.execute(
        "UPDATE users SET locked_until = ? WHERE user_id = ? AND (locked_until IS NULL OR locked_until <= ?)",
        (now + lock_seconds, user_id, now),
    )
    return changed > 0


async def login_succeeded(db: Database, user_id: str, when: str) -> None:
    """A checked password was right: the failure counter starts again."""
    await db.execute(
        "UPDATE users SET failed_logins = 0, first_failed_at = NULL, last_login_at = ? WHERE user_id = ?",
        (when, user_id),
    )


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
