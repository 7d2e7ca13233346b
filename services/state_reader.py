"""EntityState for API readers: the value as stored in ``CONSTELLATION_GLOBAL_STATE`` and the cached views."""

from __future__ import annotations

from typing import Any

import msgspec
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from core.errors import NotFound
from db.database import Database
from services.registry import entity_in
from services.state_cache import StateCache
from services.state_view import EntityView


class StoredState(msgspec.Struct, frozen=True):
    """An entity's root value exactly as stored, and its KV revision."""

    value: dict[str, Any]
    revision: int


class StateReader:
    """Reads state for the REST API (the cache for lists, the bucket for the stored value)."""

    def __init__(self, kv: KeyValue, db: Database, cache: StateCache) -> None:
        self.kv = kv
        self.db = db
        self.cache = cache

    def views(self) -> dict[str, EntityView]:
        """Every shown entity's typed view (do not modify)."""
        return self.cache.views()

    def view(self, entity_id: str) -> EntityView | None:
        """One entity's typed view (``None`` if it has none or it is withheld)."""
        return self.cache.view(entity_id)

    async def stored(self, entity_id: str) -> StoredState:
        """The root value as stored (``NotFound`` if the entity has stored none yet)."""
        try:
            entry = await self.kv.get(entity_id)
        except KeyNotFoundError:
            raise NotFound(f"no state stored for entity {entity_id} yet") from None
        value = msgspec.json.decode(entry.value or b"{}")
        return StoredState(value if isinstance(value, dict) else {}, entry.revision or 0)

    async def stored_in(self, org_id: str, entity_id: str) -> StoredState:
        """``stored`` of an entity of ``org_id`` (``NotFound`` if it is not there)."""
        await entity_in(self.db, org_id, entity_id)
        return await self.stored(entity_id)
