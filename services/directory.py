"""Fast in-memory lookups of registered entities for the hot paths.

``EntityDirectory``: positive answers are cached until the registry changes (the
projection publishes a ``registry`` update on the hub); negative answers only for a
moment, so an entity created on another node is found as soon as this node's
projection has it.

``EntityOrgs``: every registered entity's organisation, answered synchronously (the
state cache needs it inside ``apply``). It is loaded once from the SQLite projection
and then follows the ``OrgAssignment`` payloads that the projection publishes with
each entity record it applies, so it never trusts anything but the registry record
that the *key* ``entity.<id>`` names.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from core.topics import Topic
from db import registry as registry_db
from db.database import Database
from services.hub import Hub, Update

log = logging.getLogger(__name__)

NEGATIVE_TTL = 1.0  # seconds an unknown id is remembered as unknown


@dataclass(frozen=True, slots=True)
class OrgAssignment:
    """Payload of an entity's ``registry`` hub update: its organisation now (``None``: unregistered)."""

    entity_id: str
    org_id: str | None


class EntityInfo(msgspec.Struct, frozen=True):
    """What the hot paths need to know about an entity."""

    entity_id: str
    org_id: str
    entity_type: str
    name: str
    status: str
    edge: str = ""  # the edge box that owns it (a hub's copy, ``docs/scale-out.md``); "" for our own


def edge_of_metadata(metadata: str) -> str:
    """``metadata.edge`` of a registry row (the JSON text SQLite keeps), or ``""``."""
    try:
        meta = msgspec.json.decode(metadata or "{}")
    except msgspec.DecodeError:
        return ""
    edge = meta.get("edge") if isinstance(meta, dict) else None
    return edge if isinstance(edge, str) else ""


class EntityDirectory:
    """Cached ``entity_id → EntityInfo`` over the SQLite registry projection."""

    def __init__(self, db: Database, hub: Hub) -> None:
        self.db = db
        self._known: dict[str, EntityInfo] = {}
        self._unknown: dict[str, float] = {}
        hub.add_listener(self._on_update)

    def _on_update(self, update: Update) -> None:
        if update.topic == Topic.REGISTRY and update.key.startswith("entity."):
            entity_id = update.key.removeprefix("entity.")
            self._known.pop(entity_id, None)
            self._unknown.pop(entity_id, None)

    def cached(self, entity_id: str) -> EntityInfo | None:
        """The entity if it is known without a query (``None``: ask ``lookup``).

        Hot paths call this first: awaiting ``lookup`` for every message costs a coroutine
        even when the answer is in memory.
        """
        return self._known.get(entity_id)

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
            entity_id=row.entity_id,
            org_id=row.org_id,
            entity_type=row.entity_type,
            name=row.name,
            status=row.status,
            edge=edge_of_metadata(row.metadata),
        )
        self._known[entity_id] = info
        return info


class EntityOrgs:
    """``entity_id → org_id`` of every registered entity, in memory, kept by the registry projection."""

    def __init__(self, db: Database, hub: Hub) -> None:
        self.db = db
        self._orgs: dict[str, str] = {}
        self._listeners: list[Callable[[str], None]] = []
        self._touched: set[str] | None = None  # ids changed by the projection while ``load`` ran
        self.loaded = False
        hub.add_listener(self._on_update)

    def org_of(self, entity_id: str) -> str | None:
        """The organisation the registry places ``entity_id`` in (``None``: not registered)."""
        return self._orgs.get(entity_id)

    def __len__(self) -> int:
        return len(self._orgs)

    def on_change(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(entity_id)`` whenever an entity's organisation is set, changed or removed."""
        self._listeners.append(listener)

    def _on_update(self, update: Update) -> None:
        change = update.payload
        if update.topic != Topic.REGISTRY or not isinstance(change, OrgAssignment):
            return
        if self._orgs.get(change.entity_id) == change.org_id:
            return
        if change.org_id is None:
            self._orgs.pop(change.entity_id, None)
        else:
            self._orgs[change.entity_id] = change.org_id
        if self._touched is not None:
            self._touched.add(change.entity_id)
        for listener in self._listeners:
            try:
                listener(change.entity_id)
            except Exception:
                log.exception("organisation listener failed for %s", change.entity_id)

    async def load(self) -> None:
        """Read every projected entity's organisation (once, before the first state is applied)."""
        self._touched = set()
        try:
            rows = await registry_db.entity_orgs(self.db)
        finally:
            touched, self._touched = self._touched, None
        # A change the projection published while the query ran is newer than what it read.
        for entity_id, org_id in rows.items():
            if entity_id not in touched:
                self._orgs[entity_id] = org_id
        self.loaded = True
        log.info("entity organisations loaded (%d entities)", len(self._orgs))
