"""Queries on the registry projection (organisations and entities).

Writes are revision-guarded: a record is only applied when its registry revision is
newer than the stored one, so replays and the node's own echo never move it back.
"""

from __future__ import annotations

from typing import Any

import aiosqlite
import msgspec

from core.contracts.registry import EntityRecord, OrgRecord
from db.database import Database


class OrgRow(msgspec.Struct, kw_only=True):
    """An organisation row."""

    org_id: str
    name: str
    org_type: str
    description: str
    metadata: str
    created_at: str
    updated_at: str
    revision: int

    def to_record(self) -> OrgRecord:
        """The registry record this row projects."""
        return OrgRecord(
            org_id=self.org_id,
            name=self.name,
            org_type=self.org_type,  # type: ignore[arg-type]
            description=self.description,
            metadata=msgspec.json.decode(self.metadata),
            created_at=self.created_at,
            updated_at=self.updated_at,
        )


class EntityRow(msgspec.Struct, kw_only=True):
    """An entity row."""

    entity_id: str
    org_id: str
    name: str
    entity_type: str
    status: str
    priority: str
    latitude: float | None
    longitude: float | None
    altitude: float | None
    metadata: str
    video_config: str
    created_at: str
    updated_at: str
    revision: int
    affiliation: str = "friend"

    def to_record(self) -> EntityRecord:
        """The registry record this row projects."""
        position: dict[str, Any] | None = None
        if self.latitude is not None and self.longitude is not None:
            position = {"latitude": self.latitude, "longitude": self.longitude, "altitude": self.altitude}
        video = msgspec.json.decode(self.video_config) or None
        return msgspec.convert(
            {
                "entity_id": self.entity_id,
                "org_id": self.org_id,
                "name": self.name,
                "entity_type": self.entity_type,
                "status": self.status,
                "priority": self.priority,
                "affiliation": self.affiliation,
                "position": position,
                "metadata": msgspec.json.decode(self.metadata),
                "video_config": video,
                "created_at": self.created_at,
                "updated_at": self.updated_at,
            },
            EntityRecord,
        )


_enc = msgspec.json.encode


async def upsert_org(db: Database, rec: OrgRecord, revision: int) -> bool:
    """Insert or update an organisation if ``revision`` is newer; True when applied."""

    async def run(conn: aiosqlite.Connection) -> bool:
        cur = await conn.execute(
            "INSERT INTO organizations(org_id, name, org_type, description, metadata, created_at, updated_at, revision)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(org_id) DO UPDATE SET name=excluded.name, org_type=excluded.org_type,"
            " description=excluded.description, metadata=excluded.metadata, updated_at=excluded.updated_at,"
            " revision=excluded.revision WHERE excluded.revision > organizations.revision",
            (
                rec.org_id,
                rec.name,
                rec.org_type,
                rec.description,
                _enc(rec.metadata).decode(),
                rec.created_at,
                rec.updated_at,
                revision,
            ),
        )
        return cur.rowcount > 0

    return await db.write(run)


async def upsert_entity(db: Database, rec: EntityRecord, revision: int) -> bool:
    """Insert or update an entity if ``revision`` is newer; True when applied."""
    pos = rec.position
    video = _enc(rec.video_config).decode() if rec.video_config else "{}"

    async def run(conn: aiosqlite.Connection) -> bool:
        cur = await conn.execute(
            "INSERT INTO entities(entity_id, org_id, name, entity_type, status, priority, latitude, longitude,"
            " altitude, metadata, video_config, created_at, updated_at, revision, affiliation)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(entity_id) DO UPDATE SET org_id=excluded.org_id, name=excluded.name,"
            " entity_type=excluded.entity_type, status=excluded.status, priority=excluded.priority,"
            " latitude=excluded.latitude, longitude=excluded.longitude, altitude=excluded.altitude,"
            " metadata=excluded.metadata, video_config=excluded.video_config, updated_at=excluded.updated_at,"
            " revision=excluded.revision, affiliation=excluded.affiliation WHERE excluded.revision > entities.revision",
            (
                rec.entity_id,
                rec.org_id,
                rec.name,
                rec.entity_type,
                rec.status,
                rec.priority,
                pos.latitude if pos else None,
                pos.longitude if pos else None,
                pos.altitude if pos else None,
                _enc(rec.metadata).decode(),
                video,
                rec.created_at,
                rec.updated_at,
                revision,
                rec.affiliation,
            ),
        )
        return cur.rowcount > 0

    return await db.write(run)


async def delete_org(db: Database, org_id: str) -> bool:
    """Remove an organisation from the projection."""
    return await db.execute("DELETE FROM organizations WHERE org_id = ?", (org_id,)) > 0


async def delete_entity(db: Database, entity_id: str) -> bool:
    """Remove an entity from the projection."""
    return await db.execute("DELETE FROM entities WHERE entity_id = ?", (entity_id,)) > 0


async def get_org(db: Database, org_id: str) -> OrgRow | None:
    """One organisation by id."""
    return await db.fetch_one(OrgRow, "SELECT * FROM organizations WHERE org_id = ?", (org_id,))


async def list_orgs(db: Database, limit: int = 100, offset: int = 0, org_ids: list[str] | None = None) -> list[OrgRow]:
    """Organisations by name; ``org_ids`` restricts to those ids."""
    where, params = _in_clause("org_id", org_ids)
    return await db.fetch_all(
        OrgRow, f"SELECT * FROM organizations {where} ORDER BY name, org_id LIMIT ? OFFSET ?", (*params, limit, offset)
    )


async def get_entity(db: Database, entity_id: str) -> EntityRow | None:
    """One entity by id."""
    return await db.fetch_one(EntityRow, "SELECT * FROM entities WHERE entity_id = ?", (entity_id,))


async def list_entities(
    db: Database, org_id: str | None = None, limit: int = 100, offset: int = 0, org_ids: list[str] | None = None
) -> list[EntityRow]:
    """Entities by name, optionally of one organisation or of a set of organisations."""
    clauses: list[str] = []
    params: list[Any] = []
    if org_id is not None:
        clauses.append("org_id = ?")
        params.append(org_id)
    where, extra = _in_clause("org_id", org_ids)
    if where:
        clauses.append(where.removeprefix("WHERE "))
        params.extend(extra)
    sql_where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    return await db.fetch_all(
        EntityRow,
        f"SELECT * FROM entities {sql_where} ORDER BY name, entity_id LIMIT ? OFFSET ?",
        (*params, limit, offset),
    )


async def count_organizations(db: Database) -> int:
    """Number of organisations in this node's projection."""
    return int(await db.scalar("SELECT COUNT(*) FROM organizations") or 0)


async def count_entities(db: Database, org_id: str | None = None) -> int:
    """Number of entities in this node's projection (optionally of one organisation)."""
    if org_id is None:
        return int(await db.scalar("SELECT COUNT(*) FROM entities") or 0)
    return int(await db.scalar("SELECT COUNT(*) FROM entities WHERE org_id = ?", (org_id,)) or 0)


async def entity_orgs(db: Database) -> dict[str, str]:
    """``entity_id → org_id`` of every projected entity (the in-memory organisation map's start)."""
    rows = await db.fetch_rows("SELECT entity_id, org_id FROM entities")
    return {str(entity_id): str(org_id) for entity_id, org_id in rows}


def _in_clause(column: str, values: list[str] | None) -> tuple[str, list[str]]:
    if values is None:
        return "", []
    if not values:
        return "WHERE 0", []
    return f"WHERE {column} IN ({', '.join('?' for _ in values)})", list(values)
