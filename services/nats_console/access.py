"""Which organisation a key-value entry belongs to, for callers who see only some.

``CONSTELLATION_GLOBAL_STATE`` keys are ``{entity_id}`` or dotted sub-keys
``{entity_id}.{path}``; ``CONSTELLATION_REGISTRY`` keys are ``org.{org_id}`` and
``entity.{entity_id}``. An entity's organisation comes from the registry projection
(the source of truth), falling back to the state cache for entities no longer
registered. Keys of any other bucket carry no organisation and are shown only to
callers who see every organisation.
"""

from __future__ import annotations

from collections.abc import Callable

from core import topology
from core.contracts.registry import registry_entity_key, registry_org_key
from db import registry as registry_db
from db.database import Database
from services.state_cache import StateCache

MAX_ENTITIES = 100_000  # registry rows read to decide visibility of a key list

_ORG_PREFIX = registry_org_key("X").removesuffix("X")
_ENTITY_PREFIX = registry_entity_key("X").removesuffix("X")


def entity_of_key(bucket: str, key: str) -> str | None:
    """The entity a key is about (``None`` for organisation records and foreign buckets)."""
    if bucket == topology.BUCKET_STATE:
        return key.split(".", 1)[0]
    if bucket == topology.BUCKET_REGISTRY and key.startswith(_ENTITY_PREFIX):
        return key.removeprefix(_ENTITY_PREFIX)
    return None


class KeyAccess:
    """Decides which organisation a key belongs to, from the registry and the state cache."""

    def __init__(self, db: Database, state: StateCache) -> None:
        self.db = db
        self.state = state

    async def org_of_key(self, bucket: str, key: str) -> str | None:
        """The organisation owning ``key`` in ``bucket`` (``None``: none known)."""
        if bucket == topology.BUCKET_REGISTRY and key.startswith(_ORG_PREFIX):
            return key.removeprefix(_ORG_PREFIX) or None
        entity_id = entity_of_key(bucket, key)
        if not entity_id:
            return None
        row = await registry_db.get_entity(self.db, entity_id)
        if row is not None:
            return row.org_id
        view = self.state.get(entity_id)
        org = str(view.get("org_id") or "") if view else ""
        return org or None

    async def key_filter(self, bucket: str, org_ids: frozenset[str] | None) -> Callable[[str], bool]:
        """A predicate: may a caller seeing ``org_ids`` (``None`` = all) see a key of ``bucket``."""
        if org_ids is None:
            return lambda _key: True
        if bucket not in (topology.BUCKET_STATE, topology.BUCKET_REGISTRY):
            return lambda _key: False
        rows = await registry_db.list_entities(self.db, limit=MAX_ENTITIES, org_ids=sorted(org_ids))
        entities = {r.entity_id for r in rows}
        cache = self.state

        def visible(key: str) -> bool:
            if bucket == topology.BUCKET_REGISTRY and key.startswith(_ORG_PREFIX):
                return key.removeprefix(_ORG_PREFIX) in org_ids
            entity_id = entity_of_key(bucket, key)
            if not entity_id:
                return False
            if entity_id in entities:
                return True
            view = cache.get(entity_id)  # state of an entity no longer in the registry
            return view is not None and str(view.get("org_id") or "") in org_ids

        return visible

    def revision(self, entity_id: str) -> int:
        """The KV revision of the entity's state the cache last applied (0: none)."""
        return self.state.revisions.get(entity_id, 0)
