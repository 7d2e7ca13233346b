"""A hub's workers for its edge boxes: what ``CONSTELLATION_EDGES`` sourced becomes the hub's picture.

A hub (``OVERWATCH_EDGES``) sources each edge box's telemetry, events, entity lifecycle
events, command journal and acks, and registry into ``constellation.edge.{edge}.…``
(``app/topology.py``). These workers turn that into the hub's own copies, each owned by
its edge (``metadata.edge`` in the registry, ``edge`` in the EntityState value), so the
hub console shows edge entities with their edge and link state:

* ``EdgeRegistryWorker`` (shared durable ``edge-registry``): the edge's organisations
  (created here when missing) and entities (created, updated and deleted here as the
  edge does; an id that is the hub's own or another edge's is refused);
* ``EdgeTelemetryWorker`` (``edge-telemetry``): telemetry into the hub's EntityState,
  once, as the ``TelemetryWorker`` does for the hub's own entities;
* ``EdgeEntityWorker`` (``edge-entity``): the edge's ``status`` events (its entities
  going offline and back) — the hub never decides an edge entity is offline itself;
* per node, ``EdgeEventProjector``, ``EdgeCommandProjector``: detections and alerts, and
  what the edge's journal and devices say of commands. Track points of edge entities are
  sampled by ``EdgeTelemetryWorker`` into the hub's tracks stream, as for its own entities.

A message about an entity is only taken from the edge that owns it: nothing an edge
sends can change the hub's own entities or another edge's, and the hub's own subjects
cannot change an edge's (``workers.telemetry.check_owner``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from nats.aio.msg import Msg

from core import topology
from core.contracts.common import DecodeError, decode
from core.contracts.events import EntityLifecycleEvent
from core.contracts.registry import EntityRecord, OrgRecord
from core.contracts.state import new_state
from core.errors import Conflict, InvalidMessage, NotFound, TransientError
from fabric.state_store import StateStore
from services.directory import EntityDirectory
from services.registry import RegistryService
from workers.base import ConsumerWorker, Worker, WorkerContext
from workers.commands import CommandProjector
from workers.events import EventProjector
from workers.telemetry import TelemetryWorker

log = logging.getLogger("overwatch.workers.edge")

EDGE_ANY = f"{topology.PREFIX}.{topology.EDGE_TOKEN}.*"
KV_OPERATION = "KV-Operation"


def edge_of(subject: str, wanted: str) -> tuple[str, list[str]]:
    """``(edge, tokens after constellation.edge.{edge}.{wanted})``; ``InvalidMessage`` for another shape."""
    edge, local = topology.split_edge(subject)
    parts = local.split(".")
    if not edge or not topology.TOKEN_RE.match(edge) or len(parts) < 2 or parts[1] != wanted:
        raise InvalidMessage(f"unexpected edge subject {subject!r}")
    return edge, parts[2:]


class EdgeRegistryWorker(ConsumerWorker):
    """Edge boxes' organisations and entities into this hub's registry (``edge-registry``)."""

    name = "edge-registry"
    stream = topology.STREAM_EDGES
    durable = topology.CONSUMER_EDGE_REGISTRY
    batch_size = 100

    def __init__(self, ctx: WorkerContext, registry: RegistryService) -> None:
        super().__init__(ctx)
        self.registry = registry
        self.adopted = 0
        self.refused = 0

    async def handle(self, msg: Msg) -> None:
        """Apply one registry change of an edge box."""
        edge, rest = edge_of(msg.subject, "registry")
        if len(rest) != 2 or rest[0] not in ("org", "entity") or not topology.TOKEN_RE.match(rest[1]):
            raise InvalidMessage(f"unexpected registry key in {msg.subject!r}")
        kind, ident = rest
        deleted = (msg.headers or {}).get(KV_OPERATION) in ("DEL", "PURGE") or not msg.data
        registry = self.registry
        if kind == "org":
            if deleted:
                return  # organisations are shared names: the hub keeps its own
            try:
                org = decode(msg.data, OrgRecord)
            except DecodeError as exc:
                raise InvalidMessage(str(exc)) from None
            if org.org_id != ident:
                raise InvalidMessage(f"organisation record {org.org_id} under key org.{ident}")
            await registry.adopt_edge_org(org, edge)
            return
        if deleted:
            await registry.release_edge_entity(ident, edge)
            return
        try:
            rec = decode(msg.data, EntityRecord)
        except DecodeError as exc:
            raise InvalidMessage(str(exc)) from None
        if rec.entity_id != ident:
            raise InvalidMessage(f"entity record {rec.entity_id} under key entity.{ident}")
        try:
            outcome = await registry.adopt_edge_entity(rec, edge)
        except Conflict as exc:
            self.refused += 1
            raise InvalidMessage(exc.detail) from None
        except NotFound as exc:
            raise TransientError(exc.detail) from None  # its organisation's record comes first
        if outcome != "unchanged":
            self.adopted += 1
            log.info("edge box %s: entity %s %s", edge, rec.entity_id, outcome)


class EdgeTelemetryWorker(TelemetryWorker):
    """Edge boxes' telemetry into this hub's EntityState, once (``edge-telemetry``)."""

    name = "edge-telemetry"
    stream = topology.STREAM_EDGES
    durable = topology.CONSUMER_EDGE_TELEMETRY

    async def _sweep_loop(self) -> None:
        # The hub's own TelemetryWorker sweeps, and skips edge entities: their edge says when they go offline.
        await self.stopping.wait()


class EdgeEntityWorker(ConsumerWorker):
    """Edge boxes' ``status`` events: their entities going offline and back (``edge-entity``)."""

    name = "edge-entity"
    stream = topology.STREAM_EDGES
    durable = topology.CONSUMER_EDGE_ENTITY
    batch_size = 200

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        self.directory = EntityDirectory(ctx.db, ctx.hub)
        self.store = StateStore(ctx.kv_state, "edge-status")

    async def handle(self, msg: Msg) -> None:
        """Apply a status event of an edge entity; other lifecycle events come with the registry."""
        edge, rest = edge_of(msg.subject, "entities")
        if len(rest) != 2 or rest[1] not in topology.ENTITY_LIFECYCLE:
            raise InvalidMessage(f"unexpected lifecycle subject {msg.subject!r}")
        if rest[1] != "status":
            return
        try:
            event = decode(msg.data, EntityLifecycleEvent)
        except DecodeError as exc:
            raise InvalidMessage(str(exc)) from None
        data = event.data
        info = await self.directory.lookup(data.entity_id)
        if info is None:
            raise TransientError(f"edge entity {data.entity_id} not in this hub's registry yet")
        if info.edge != edge or info.org_id != rest[0]:
            raise InvalidMessage(f"entity {data.entity_id} is not edge box {edge}'s in organisation {rest[0]}")
        if data.is_live is None and data.status is None:
            return

        def mutate(doc: dict[str, Any]) -> bool:
            before = (doc.get("is_live"), doc.get("status"))
            if data.is_live is not None:
                doc["is_live"] = data.is_live
            if data.status in ("active", "offline", "error"):
                doc["status"] = data.status
            doc["edge"] = edge
            return (doc.get("is_live"), doc.get("status")) != before

        await self.store.merge(
            info.entity_id,
            mutate,
            defaults=lambda: new_state(info.entity_id, info.org_id, info.entity_type, name=info.name, edge=edge),
        )


class EdgeEventProjector(EventProjector):
    """This node's detections and alerts of edge entities (``ow-{node}-edge-events``)."""

    name = "edge-events-projection"
    stream = topology.STREAM_EDGES
    filter_subject = f"{EDGE_ANY}.events.>"
    projection = "edge-events"
    adopt_durable = ""


class EdgeCommandProjector(CommandProjector):
    """What edge boxes' journals and devices say of commands, in this node's history (``ow-{node}-edge-commands``).

    The edge owns its entities' commands: its word replaces an expiry the hub only
    inferred while it heard nothing (the link was down).
    """

    name = "edge-commands-projection"
    stream = topology.STREAM_EDGES
    filter_subject = f"{EDGE_ANY}.commands.>"
    projection = "edge-commands"
    adopt_durable = ""
    overrides_expired = True


# (context, the application's services) -> worker; the services object is the app layer's, so typed loosely here.
EdgeWorkerFactory = Callable[[WorkerContext, Any], Worker]


def edge_worker_factories() -> list[EdgeWorkerFactory]:
    """A hub's edge workers, each given the services it uses (added by ``app/bootstrap.py`` on a hub)."""
    return [
        lambda ctx, s: EdgeRegistryWorker(ctx, s.registry),
        lambda ctx, s: EdgeTelemetryWorker(ctx, s.state_cache),
        lambda ctx, s: EdgeEntityWorker(ctx),
        lambda ctx, s: EdgeEventProjector(ctx, s.alerts),
        lambda ctx, s: EdgeCommandProjector(ctx, s.commands),
    ]
