"""A fast in-memory lookup of registered entities for the workers' hot paths.

Positive answers are cached until the registry changes (the projection publishes a
``registry`` update on the hub); negative answers only for a moment, so an entity
created on another node is found as soon as this node's projection has it.
"""

from __future__ import annotations

import time

import msgspec

from app.sse.hub import Hub, Update
from db import registry as registry_db
from db.database import Database

NEGATIVE_TTL = 1.0  # seconds an unknown id is remembered as unknown


class EntityInfo(msgspec.Struct, frozen=True):
    """What the hot paths need to know about an entity."""

    entity_id: str
    org_id: str
    entity_type: str
    name: str
    status: str


class EntityDirectory:
    """Cached ``entity_id → EntityInfo`` over the SQLite registry projection."""

    def __init__(self, db: Database, hub: Hub) -> None:
        self.db = db
        self._known: dict[str, EntityInfo] = {}
        self._unknown: dict[str, float] = {}
        hub.add_listener(self._on_update)

    def _on_update(self, update: Update) -> None:
        if update.topic == "registry" and update.key.startswith("entity."):
            entity_id = update.key.removeprefix("entity.")
            self._known.pop(entity_id, None)
            self._unknown.pop(entity_id, None)

    async def lookup(self, entity_id: str) -> EntityInfo | None:
        """The entity, or ``None`` if it is not registered."""
        info = self._known.get(entity_id)
        if info is not None:
            return info
        seen = self._unknown.get(entity_id)
        if seen is not None and time.monotonic() - seen < NEGATIVE_TTL:
            return None
        row = await registry_db.get_entity(self.db, entity_id)
        if row is None:
            if len(self._unknown) > 100_000:
                self._unknown.clear()
            self._unknown[entity_id] = time.monotonic()
            return None
        info = EntityInfo(
            entity_id=row.entity_id, org_id=row.org_id, entity_type=row.entity_type, name=row.name, status=row.status
        )
        self._known[entity_id] = info
        return info
