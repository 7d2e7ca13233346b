"""API keys (stored as HMACs)."""

from __future__ import annotations

import msgspec

from db.database import Database


class ApiKeyRow(msgspec.Struct, kw_only=True):
    """One API key (never the key itself)."""

    key_id: str
    name: str
    prefix: str
    key_hash: str
    scopes: str
    org_id: str | None
    nats_pubkey: str | None
    created_by: str
    created_at: str
    expires_at: str | None
    last_used_at: str | None
    revoked_at: str | None
    nats_kind: str = "device"  # with NATS credentials: "device" (publishes) or "reader" (reads only)

    @property
    def scope_list(self) -> list[str]:
        """Scopes as a list."""
        return [s for s in self.scopes.split(",") if s]


async def insert_key(db: Database, row: ApiKeyRow) -> None:
    """Store a new key."""
    await db.execute(
        "INSERT INTO api_keys(key_id, name, prefix, key_hash, scopes, org_id, nats_pubkey, created_by, created_at,"
        " expires_at, nats_kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            row.key_id,
            row.name,
            row.prefix,
            row.key_hash,
            row.scopes,
            row.org_id,
            row.nats_pubkey,
            row.created_by,
            row.created_at,
            row.expires_at,
            row.nats_kind,
        ),
    )


async def by_hash(db: Database, key_hash: str) -> ApiKeyRow | None:
    """The key with this HMAC."""
    return await db.fetch_one(ApiKeyRow, "SELECT * FROM api_keys WHERE key_hash = ?", (key_hash,))


async def get_key(db: Database, key_id: str) -> ApiKeyRow | None:
    """One key by id."""
    return await db.fetch_one(ApiKeyRow, "SELECT * FROM api_keys WHERE key_id = ?", (key_id,))


async def list_keys(db: Database, include_revoked: bool = False) -> list[ApiKeyRow]:
    """Keys, newest first."""
    where = "" if include_revoked else "WHERE revoked_at IS NULL"
    return await db.fetch_all(ApiKeyRow, f"SELECT * FROM api_keys {where} ORDER BY created_at DESC")


async def revoke_key(db: Database, key_id: str, when: str) -> bool:
    """Revoke a key (idempotent: False when already revoked or unknown)."""
    return (
        await db.execute("UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL", (when, key_id))
        > 0
    )


async def mark_used(db: Database, key_id: str, when: str) -> None:
    """Record the last use of a key."""
    await db.execute("UPDATE api_keys SET last_used_at = ? WHERE key_id = ?", (when, key_id))
