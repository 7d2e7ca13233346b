"""The registry service: organisations and entities, with NATS as the source of truth.

Writes go to the ``CONSTELLATION_REGISTRY`` bucket first (create / CAS update /
delete), then a lifecycle event is published on ``constellation.entities.…``, then
the record is applied to this node's SQLite projection at once. Every node's
``RegistryProjector`` applies the same bucket changes, so all nodes converge.

This service is the bucket's only writer (the console's KV browser shows it read-only
and device credentials cannot reach it); the projection still checks every record
against its key, so an organisation is always the one the key's record names.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from core import topology
from core.camera.pose import PoseError, camera_config
from core.contracts.common import DecodeError, decode, encode, new_id, utc_now
from core.contracts.events import EntityLifecycleEvent, LifecycleData
from core.contracts.registry import (
    EntityRecord,
    OrgRecord,
    registry_entity_key,
    registry_org_key,
)
from core.errors import Conflict, Invalid, NotFound, Unavailable
from core.structs import as_view
from core.topics import Topic
from db import registry as registry_db
from db.database import Database
from services.audit import SYSTEM_ACTOR, Actor, AuditService, diff
from services.directory import OrgAssignment, edge_of_metadata
from services.hub import Hub, Update
from services.schemas import EntityCreate, EntityUpdate, OrgCreate, OrgUpdate, Page

log = logging.getLogger(__name__)

CAS_RETRIES = 8
T = TypeVar("T")


class RegistryRejected(Invalid):
    """A registry record the projection refuses: it disagrees with its key, or would move an entity.

    ``reason`` is a short code for counters (``key_mismatch``, ``invalid``, ``org_move``,
    ``unknown_key``); the message says what was wrong.
    """

    def __init__(self, key: str, reason: str, detail: str) -> None:
        super().__init__(f"registry record {key} refused ({reason}): {detail}")
        self.key = key
        self.reason = reason


def _decode_record(key: str, value: bytes, type_: type[T]) -> T:
    try:
        return decode(value, type_)
    except DecodeError as exc:
        raise RegistryRejected(key, "invalid", str(exc)) from None


def _check_id(key: str, ident: str, field: str, body_id: str) -> None:
    """The id in the key must be a valid id and the very id the body names."""
    if not topology.TOKEN_RE.match(ident):
        raise RegistryRejected(key, "invalid", f"{ident!r} is not a valid id")
    if body_id != ident:
        raise RegistryRejected(key, "key_mismatch", f"the body's {field} {body_id!r} is not the key's {ident!r}")


async def _check_entity(db: Database, key: str, ident: str, rec: EntityRecord, revision: int) -> None:
    """An entity keeps its organisation for the life of its record.

    The registry service has no "move" (``EntityUpdate`` has no ``org_id``); an entity
    changes organisation only by being deleted and created again, which gives the new
    record a ``created_at`` later than anything the old one had. A newer revision that
    names another organisation for the same record is therefore refused.
    """
    _check_id(key, ident, "entity_id", rec.entity_id)
    if not topology.TOKEN_RE.match(rec.org_id):
        raise RegistryRejected(key, "invalid", f"org_id {rec.org_id!r} is not a valid id")
    current = await registry_db.get_entity(db, ident)
    if current is None or current.org_id == rec.org_id or revision <= current.revision:
        return  # new, unchanged organisation, or an older revision the upsert ignores anyway
    if rec.created_at > current.updated_at:
        # A re-created record (this node missed the delete, e.g. while it was down).
        log.info("registry: %s re-created in organisation %s (was %s)", key, rec.org_id, current.org_id)
        return
    raise RegistryRejected(
        key, "org_move", f"entity {ident} belongs to organisation {current.org_id}, the record names {rec.org_id}"
    )


async def apply_registry_entry(db: Database, hub: Hub | None, key: str, value: bytes | None, revision: int) -> bool:
    """Apply one registry bucket entry (``value=None`` = deleted) to the projection.

    Returns True when the projection changed. A record is accepted only if it agrees
    with its key (``org.<id>`` holds an organisation whose ``org_id`` is ``<id>``,
    ``entity.<id>`` an entity whose ``entity_id`` is ``<id>``) and does not move an
    existing entity to another organisation; otherwise ``RegistryRejected`` is raised
    and nothing changes. Entity changes are announced with an ``OrgAssignment`` payload,
    which is what ``EntityOrgs`` (and so the state cache) follows.
    """
    kind, _, ident = key.partition(".")
    assignment: OrgAssignment | None = None
    if kind == "org":
        if value is None:
            changed = await registry_db.delete_org(db, ident)
        else:
            org = _decode_record(key, value, OrgRecord)
            _check_id(key, ident, "org_id", org.org_id)
            changed = await registry_db.upsert_org(db, org, revision)
    elif kind == "entity":
        if value is None:
            changed = await registry_db.delete_entity(db, ident)
            assignment = OrgAssignment(ident, None)
        else:
            entity = _decode_record(key, value, EntityRecord)
            await _check_entity(db, key, ident, entity, revision)
            changed = await registry_db.upsert_entity(db, entity, revision)
            assignment = OrgAssignment(ident, entity.org_id)
    else:
        raise RegistryRejected(key, "unknown_key", "registry keys are org.<org_id> or entity.<entity_id>")
    if changed and hub is not None:
        hub.publish(Update(Topic.REGISTRY, key, assignment))
    return changed


def check_camera_metadata(metadata: dict[str, Any]) -> None:
    """A camera pose in ``metadata.camera`` must be a valid one (422 naming the field otherwise)."""
    if "camera" in metadata:
        try:
            camera_config(metadata["camera"])
        except PoseError as exc:
            raise Invalid(str(exc)) from None


async def org_choices(db: Database, limit: int = 10_000) -> list[registry_db.OrgRow]:
    """Every organisation (up to ``limit``), by name: the choices of a membership or key form."""
    return await registry_db.list_orgs(db, limit=limit)


async def entity_in(db: Database, org_id: str | None, entity_id: str) -> registry_db.EntityRow:
    """The projected entity, ``NotFound`` if unknown or not in ``org_id`` (when given).

    Every service that answers for something of one entity (its state, track, detections,
    alerts) checks with this first, so an entity of another organisation reads as absent.
    """
    row = await registry_db.get_entity(db, entity_id)
    if row is None or (org_id is not None and row.org_id != org_id):
        raise NotFound(f"entity {entity_id} not found")
    return row


def _identity(rec: OrgRecord | EntityRecord) -> tuple[str, str, str]:
    """A record's registry key, its noun for messages and audit actions, and its id."""
    if isinstance(rec, EntityRecord):
        return registry_entity_key(rec.entity_id), "entity", rec.entity_id
    return registry_org_key(rec.org_id), "organization", rec.org_id


class RegistryService:
    """Create, read, update and delete organisations and entities."""

    def __init__(self, kv: KeyValue, js: JetStreamContext, db: Database, hub: Hub, audit: AuditService) -> None:
        self.kv = kv
        self.js = js
        self.db = db
        self.hub = hub
        self.audit = audit

    # ------------------------------------------------------------ organisations
    async def create_org(self, body: OrgCreate, actor: Actor = SYSTEM_ACTOR) -> OrgRecord:
        """Create an organisation; 409 if the id exists."""
        now = utc_now()
        rec = as_view(body, OrgRecord, org_id=body.org_id or new_id(), created_at=now, updated_at=now)
        await self._create(rec, actor)
        return rec

    async def update_org(self, org_id: str, body: OrgUpdate, actor: Actor = SYSTEM_ACTOR) -> OrgRecord:
        """Change the given fields of an organisation."""
        return await self._patch(registry_org_key(org_id), OrgRecord, body, f"organization {org_id}", actor)

    async def delete_org(self, org_id: str, actor: Actor = SYSTEM_ACTOR) -> None:
        """Delete an organisation and all its entities."""
        before = await self.get_org(org_id)
        for row in await registry_db.list_entities(self.db, org_id=org_id, limit=1_000_000):
            await self.delete_entity(org_id, row.entity_id, actor)
        await self._remove(before, actor)

    async def get_org(self, org_id: str) -> OrgRecord:
        """One organisation from the projection (404 if unknown)."""
        row = await registry_db.get_org(self.db, org_id)
        if row is None:
            raise NotFound(f"organization {org_id} not found")
        return row.to_record()

    async def list_orgs(self, limit: int, offset: int, org_ids: list[str] | None = None) -> Page[OrgRecord]:
        """A page of organisations (optionally only ``org_ids``)."""
        rows = await registry_db.list_orgs(self.db, limit, offset, org_ids)
        total = len(org_ids) if org_ids is not None else await registry_db.count_organizations(self.db)
        return Page(items=[r.to_record() for r in rows], total=total, limit=limit, offset=offset)

    # ------------------------------------------------------------ entities
    async def create_entity(self, org_id: str, body: EntityCreate, actor: Actor = SYSTEM_ACTOR) -> EntityRecord:
        """Create an entity under an existing organisation; 409 if the id exists."""
        check_camera_metadata(body.metadata)
        await self.get_org(org_id)
        now = utc_now()
        rec = as_view(
            body, EntityRecord, entity_id=body.entity_id or new_id(), org_id=org_id, created_at=now, updated_at=now
        )
        return await self.register_entity(rec, actor)

    async def register_entity(self, rec: EntityRecord, actor: Actor = SYSTEM_ACTOR) -> EntityRecord:
        """Write a new entity record to the registry (used by the API and self-registration)."""
        await self._create(rec, actor)
        return rec

    async def update_entity(
        self, org_id: str, entity_id: str, body: EntityUpdate, actor: Actor = SYSTEM_ACTOR
    ) -> EntityRecord:
        """Change the given fields of an entity (not a hub's copy of an edge box's: the edge owns it)."""
        if body.metadata is not msgspec.UNSET:
            check_camera_metadata(body.metadata)
        await self.get_entity(org_id, entity_id)
        await self._not_an_edge_copy(entity_id, actor)
        return await self._patch(registry_entity_key(entity_id), EntityRecord, body, f"entity {entity_id}", actor)

    async def delete_entity(self, org_id: str, entity_id: str, actor: Actor = SYSTEM_ACTOR) -> None:
        """Delete an entity (registry, then projection, then lifecycle event); an edge copy only as the system."""
        rec = await self.get_entity(org_id, entity_id)
        await self._not_an_edge_copy(entity_id, actor)
        await self._remove(rec, actor)

    async def get_entity(self, org_id: str | None, entity_id: str) -> EntityRecord:
        """One entity from the projection; 404 if unknown or not in ``org_id``."""
        return (await entity_in(self.db, org_id, entity_id)).to_record()

    async def list_entities(
        self, org_id: str | None, limit: int, offset: int, org_ids: list[str] | None = None
    ) -> Page[EntityRecord]:
        """A page of entities of one organisation (or all visible ones)."""
        if org_id is not None:
            await self.get_org(org_id)
        rows = await registry_db.list_entities(self.db, org_id, limit, offset, org_ids)
        total = await registry_db.count_entities(self.db, org_id)
        return Page(items=[r.to_record() for r in rows], total=total, limit=limit, offset=offset)

    # ------------------------------------------------------------ a hub's copies of edge boxes' records
    async def adopt_edge_org(self, rec: OrgRecord, edge: str) -> bool:
        """Create an edge box's organisation here if this hub has none of that id (True when created).

        Organisations are shared names: an existing one is the hub's and stays as it is.
        """
        if await registry_db.get_org(self.db, rec.org_id) is not None:
            return False
        try:
            await self.create_org(
                OrgCreate(org_id=rec.org_id, name=rec.name, org_type=rec.org_type, description=rec.description),
                SYSTEM_ACTOR,
            )
        except Conflict:
            return False  # another hub node created it a moment ago
        log.info("organisation %s adopted from edge box %s", rec.org_id, edge)
        return True

    async def adopt_edge_entity(self, rec: EntityRecord, edge: str) -> str:
        """Create or update this hub's copy of an edge box's entity: ``created``, ``updated`` or ``unchanged``.

        The copy carries ``metadata.edge``; an id that is this hub's own or another edge's is
        refused (``Conflict``), as is a move to another organisation. ``NotFound`` while the
        organisation is not here yet.
        """
        copy = msgspec.structs.replace(rec, metadata={**rec.metadata, "edge": edge})
        existing = await registry_db.get_entity(self.db, rec.entity_id)
        if existing is None:
            if await registry_db.get_org(self.db, rec.org_id) is None:
                raise NotFound(f"organization {rec.org_id} of edge entity {rec.entity_id} not here yet")
            await self.register_entity(copy)
            return "created"
        owner = edge_of_metadata(existing.metadata)
        if owner != edge:
            whose = f"edge box {owner}'s" if owner else "this hub's own"
            raise Conflict(f"entity {rec.entity_id} of edge box {edge} is refused: the id is {whose}")
        if existing.org_id != rec.org_id:
            raise Conflict(f"entity {rec.entity_id} of edge box {edge} would move to organisation {rec.org_id}")
        current = existing.to_record()
        if msgspec.structs.replace(current, updated_at="", created_at="") == msgspec.structs.replace(
            copy, updated_at="", created_at=""
        ):
            return "unchanged"
        await self._cas(
            registry_entity_key(rec.entity_id),
            EntityRecord,
            lambda old: msgspec.structs.replace(copy, created_at=old.created_at),
            f"entity {rec.entity_id}",
        )
        return "updated"

    async def release_edge_entity(self, entity_id: str, edge: str) -> bool:
        """Delete this hub's copy of an entity its edge box deleted (True when it was that edge's)."""
        existing = await registry_db.get_entity(self.db, entity_id)
        if existing is None or edge_of_metadata(existing.metadata) != edge:
            return False
        await self.delete_entity(existing.org_id, entity_id)
        return True

    async def _not_an_edge_copy(self, entity_id: str, actor: Actor) -> None:
        row = await registry_db.get_entity(self.db, entity_id)
        edge = edge_of_metadata(row.metadata) if row is not None else ""
        if edge and actor is not SYSTEM_ACTOR:
            raise Conflict(f"entity {entity_id} is owned by edge box {edge}: change it there")

    # ------------------------------------------------------------ internals
    async def _create(self, rec: OrgRecord | EntityRecord, actor: Actor) -> None:
        """Write a new record (409 if its key exists), project it, announce an entity, audit."""
        key, kind, ident = _identity(rec)
        try:
            revision = await self.kv.create(key, encode(rec))
        except KeyWrongLastSequenceError:
            raise Conflict(f"{kind} {ident} already exists") from None
        # Project locally before announcing, so this node's workers already know the entity.
        await apply_registry_entry(self.db, self.hub, key, encode(rec), revision)
        if isinstance(rec, EntityRecord):
            await self._lifecycle(rec, "created", revision)
        changes = diff(None, msgspec.to_builtins(rec))
        await self.audit.record(actor, f"{kind}.create", target=ident, org_id=rec.org_id, changes=changes)

    async def _remove(self, rec: OrgRecord | EntityRecord, actor: Actor) -> None:
        """Delete a record (registry, then projection, then an entity's lifecycle event), audited."""
        key, kind, ident = _identity(rec)
        await self.kv.delete(key)
        await apply_registry_entry(self.db, self.hub, key, None, 0)
        if isinstance(rec, EntityRecord):
            await self._lifecycle(rec, "deleted", 0)
        changes = diff(msgspec.to_builtins(rec), None)
        await self.audit.record(actor, f"{kind}.delete", target=ident, org_id=rec.org_id, changes=changes)

    async def _patch(self, key: str, type_: type[T], body: msgspec.Struct, what: str, actor: Actor) -> T:
        """Set the fields ``body`` gives (the rest are ``UNSET``) on the record at ``key``, stamping ``updated_at``."""
        changes = {k: v for k, v in msgspec.structs.asdict(body).items() if v is not msgspec.UNSET}
        rec: T = await self._cas(
            key, type_, lambda r: msgspec.structs.replace(r, **changes, updated_at=utc_now()), what, actor
        )
        return rec

    async def _cas(
        self, key: str, type_: type[Any], change: Callable[[Any], Any], what: str, actor: Actor = SYSTEM_ACTOR
    ) -> Any:
        for _ in range(CAS_RETRIES):
            try:
                entry = await self.kv.get(key)
            except KeyNotFoundError:
                raise NotFound(f"{what} not found") from None
            assert entry.value is not None
            rec = change(decode(entry.value, type_))
            rec = msgspec.convert(msgspec.to_builtins(rec), type_)  # re-validate the merged record
            try:
                revision = await self.kv.update(key, encode(rec), last=entry.revision)
            except KeyWrongLastSequenceError:
                continue
            await apply_registry_entry(self.db, self.hub, key, encode(rec), revision)
            if isinstance(rec, EntityRecord):
                await self._lifecycle(rec, "updated", revision)
            kind = "entity" if isinstance(rec, EntityRecord) else "organization"
            before = msgspec.to_builtins(decode(entry.value, type_))
            await self.audit.record(
                actor,
                f"{kind}.update",
                target=key.partition(".")[2],
                org_id=getattr(rec, "org_id", ""),
                changes=diff(before, msgspec.to_builtins(rec)),
            )
            return rec
        raise Unavailable(f"{what} is being changed concurrently; try again")

    async def _lifecycle(self, rec: EntityRecord, kind: str, revision: int) -> None:
        event = EntityLifecycleEvent(
            id=new_id(),
            type=kind,  # type: ignore[arg-type]
            data=LifecycleData(
                entity_id=rec.entity_id,
                org_id=rec.org_id,
                entity_type=rec.entity_type,
                status=rec.status,
                priority=rec.priority,
                name=rec.name,
            ),
            timestamp=utc_now(),
            source="overwatch",
            subject=topology.entity_lifecycle_subject(rec.org_id, kind),
        )
        await self.js.publish(
            event.subject or "",
            encode(event),
            # Revision-based ids deduplicate retries; deletes have no revision, so they get a unique id.
            headers={"Nats-Msg-Id": f"{rec.entity_id}-{kind}-{revision}" if revision else event.id},
        )
