"""EntityWorker: entity lifecycle events → the KV root of EntityState.

Consumes ``constellation.entities.{org_id}.{created|updated|deleted|status}``:

* ``created`` / ``updated``: CAS-merge the registry-owned root fields (``org_id``,
  ``entity_type``, ``name``, ``priority``, ``status``) — other scopes are untouched; a
  ``created`` event from an outside publisher for an entity the registry does not know
  registers it (devices may announce themselves), if its organisation exists and has
  fewer than ``OVERWATCH_MAX_ENTITIES_PER_ORG`` entities;
* ``deleted``: remove the entity's state;
* ``status`` from an outside publisher: apply its ``status`` (``active``, ``offline`` or
  ``error``; older words are read as ``offline``). Our own status events are
  notifications of liveness transitions and change nothing here.

The stored ``status`` is the downstream PRD's: ``error`` when the registry or the entity
says so, otherwise ``active`` while the entity is live and ``offline`` when it is not.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from nats.aio.msg import Msg

from core import topology
from core.camera.pose import PoseError, camera_config
from core.contracts.common import DecodeError, decode, utc_now
from core.contracts.events import EntityLifecycleEvent
from core.contracts.registry import ENTITY_TYPES, EntityRecord
from core.contracts.state import STATUS_ALIASES, STATUSES, new_state, status_word
from core.errors import Conflict, InvalidMessage, TransientError
from db import registry as registry_db
from fabric.state_store import StateStore
from services.registry import RegistryService
from workers.base import ConsumerWorker, WorkerContext

log = logging.getLogger("overwatch.workers.entity")

MAX_PAYLOAD = 256 * 1024
ROOT_FIELDS = ("org_id", "entity_type", "name", "priority", "status", "affiliation", "camera")


def camera_scope(metadata: str) -> dict[str, Any] | None:
    """The record's ``metadata.camera`` pose (validated when it was written) for the state's ``camera`` root field."""
    try:
        value = msgspec.json.decode(metadata or "{}")
        if not isinstance(value, dict) or "camera" not in value:
            return None
        return dict(msgspec.to_builtins(camera_config(value["camera"])))
    except (msgspec.DecodeError, PoseError):
        return None  # written by another node's older version, or by hand: no pose rather than a wrong one


class EntityWorker(ConsumerWorker):
    """Consumes ``constellation.entities.>`` through ``entity-processor``."""

    name = "entity"
    stream = topology.STREAM_ENTITIES
    durable = topology.CONSUMER_ENTITY
    batch_size = 200

    def __init__(self, ctx: WorkerContext, registry: RegistryService) -> None:
        super().__init__(ctx)
        self.registry = registry
        self.store = StateStore(ctx.kv_state, "registry")

    async def handle(self, msg: Msg) -> None:
        """Apply one lifecycle event."""
        self.reject_server_reply(msg)
        parts = msg.subject.split(".")
        if len(parts) != 4 or parts[3] not in topology.ENTITY_LIFECYCLE or not topology.TOKEN_RE.match(parts[2]):
            raise InvalidMessage(f"unexpected lifecycle subject {msg.subject!r}")
        subject_org, kind = parts[2], parts[3]
        if len(msg.data) > MAX_PAYLOAD:
            raise InvalidMessage(f"payload of {len(msg.data)} bytes exceeds {MAX_PAYLOAD}")
        try:
            event = decode(msg.data, EntityLifecycleEvent)
        except DecodeError as exc:
            raise InvalidMessage(str(exc)) from None
        data = event.data
        if not topology.TOKEN_RE.match(data.entity_id):
            raise InvalidMessage(f"invalid entity_id {data.entity_id!r}")
        if data.org_id and data.org_id != subject_org:
            raise InvalidMessage(f"org_id {data.org_id!r} does not match subject organisation {subject_org!r}")
        ours = event.source == "overwatch"
        if kind == "deleted":
            if ours or await registry_db.get_entity(self.ctx.db, data.entity_id) is None:
                await self.store.delete(data.entity_id)
            return
        if kind == "status":
            if not ours and data.status is not None:
                await self._apply_status(data.entity_id, subject_org, data.status)
            return
        row = await registry_db.get_entity(self.ctx.db, data.entity_id)
        if row is None and not ours:
            await self._self_register(subject_org, event)
            row = await registry_db.get_entity(self.ctx.db, data.entity_id)
        if row is None:
            if msg.metadata.num_delivered < 3:
                raise TransientError(f"entity {data.entity_id} not yet in this node's registry projection")
            raise InvalidMessage(f"unknown entity {data.entity_id}")
        if row.org_id != subject_org:
            raise InvalidMessage(f"entity {data.entity_id} belongs to organisation {row.org_id}")
        root = {
            "org_id": row.org_id,
            "entity_type": row.entity_type,
            "name": row.name,
            "priority": row.priority,
            "status": row.status,
            "affiliation": row.affiliation,
            "camera": camera_scope(row.metadata),
        }

        def mutate(doc: dict[str, Any]) -> bool:
            changed = False
            for key, value in root.items():
                if key == "status":
                    # Liveness owns active/offline; the registry can only declare an error.
                    value = "error" if value == "error" else ("active" if doc.get("is_live") else "offline")
                if value is None:  # an optional root field the record no longer has
                    changed = doc.pop(key, None) is not None or changed
                elif doc.get(key) != value:
                    doc[key] = value
                    changed = True
            return changed

        await self.store.merge(
            data.entity_id,
            mutate,
            defaults=lambda: new_state(
                data.entity_id,
                row.org_id,
                row.entity_type,
                name=row.name,
                priority=row.priority,
                status="error" if row.status == "error" else "offline",
            ),
        )

    async def _apply_status(self, entity_id: str, org_id: str, status: str) -> None:
        if status not in STATUSES and status not in STATUS_ALIASES:
            accepted = ", ".join([*STATUSES, *STATUS_ALIASES])
            raise InvalidMessage(f"unknown status {status[:40]!r}: use one of {accepted}")
        status = status_word(status)
        row = await registry_db.get_entity(self.ctx.db, entity_id)
        if row is None or row.org_id != org_id:
            raise InvalidMessage(f"unknown entity {entity_id} in organisation {org_id}")

        def mutate(doc: dict[str, Any]) -> bool:
            if doc.get("status") == status:
                return False
            doc["status"] = status
            return True

        await self.store.merge(entity_id, mutate, create=False)

    async def _self_register(self, org_id: str, event: EntityLifecycleEvent) -> None:
        """Register an entity announced by an outside ``created`` event, if its organisation exists."""
        if await registry_db.get_org(self.ctx.db, org_id) is None:
            raise InvalidMessage(f"unknown organisation {org_id}")
        limit = self.ctx.settings.max_entities_per_org
        if await registry_db.count_entities(self.ctx.db, org_id) >= limit:
            # One device must not grow the registry (and the NATS users' permissions) without bound.
            raise InvalidMessage(
                f"organisation {org_id} has reached its limit of {limit} entities (OVERWATCH_MAX_ENTITIES_PER_ORG);"
                f" entity {event.data.entity_id} was not registered"
            )
        data = event.data
        entity_type = data.entity_type or "sensor_platform"
        if entity_type not in ENTITY_TYPES:
            raise InvalidMessage(f"unknown entity_type {entity_type!r}")
        now = utc_now()
        try:
            rec = msgspec.convert(
                {
                    "entity_id": data.entity_id,
                    "org_id": org_id,
                    "name": (data.name or "")[:255],
                    "entity_type": entity_type,
                    "status": status_word(data.status),
                    "priority": data.priority or "normal",
                    "created_at": now,
                    "updated_at": now,
                    "metadata": {"registered_by": event.source[:64]},
                },
                EntityRecord,
            )
        except msgspec.ValidationError as exc:
            raise InvalidMessage(f"cannot register entity: {exc}") from None
        try:
            await self.registry.register_entity(rec)
            log.info("entity %s registered itself in organisation %s", data.entity_id, org_id)
        except Conflict:
            pass  # registered meanwhile (another node, or a retry)
