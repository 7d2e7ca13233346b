"""TelemetryWorker: telemetry → EntityState scopes (CAS) with sampled track points, liveness sweep.

Bursts coalesce per entity: messages fetched within one write interval are merged
(latest value of each field wins) and written as one CAS update, at most
``OVERWATCH_TELEMETRY_MAX_HZ`` times per second per entity. A message is acknowledged
only after the write that contains it succeeded, so ``kill -9`` at any moment loses
nothing JetStream acknowledged. The liveness sweep marks silent entities offline
(the default offline rule, ``workers/rules.py``, alerts on it; ``workers/status_events.py`` publishes it).

The worker reads the shared durable ``telemetry-processor`` (each message applied to KV
once, by one node). It also samples track points by the stream's time as part of each
write and publishes them before acknowledging; every node stores them (``workers/tracks.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nats.aio.msg import Msg

from core import topology
from core.contracts.common import DecodeError, decode_object, utc_now
from core.contracts.state import new_state
from core.contracts.telemetry import to_patch
from core.errors import InvalidMessage, TransientError
from core.timefmt import parse_time
from db.tracks import TrackPoint
from fabric.state_store import Job, StateStore, deep_merge
from services.directory import EntityDirectory, EntityInfo
from services.state_cache import StateCache
from workers.base import ConsumerWorker, WorkerContext
from workers.projection import ack_fields
from workers.tracks import Candidate, candidate, publish_points, sample

log = logging.getLogger("overwatch.workers.telemetry")

MAX_PAYLOAD = 64 * 1024  # bytes; larger telemetry is dead-lettered
UNKNOWN_ENTITY_RETRIES = 2  # deliveries to wait for a registry that is still catching up
FETCH_BATCH = 2000
# Un-acked messages held for coalescing: what the consumer allows, less one fetch still in flight.
MAX_HELD = topology.TELEMETRY_MAX_ACK_PENDING - FETCH_BATCH
BACKLOG_FLUSH = 1.0  # seconds between writes while a backlog is drained (more coalescing, fewer writes)
BACKLOG_PENDING = 5_000  # messages still waiting in the stream that count as a backlog
# Nodes share the telemetry durable, so two of them may write one entity's messages out of order:
# each scope remembers the stream sequence it was written from, and an older one never overwrites it.
ORDER_FIELD = "telemetry_seq"


@dataclass
class Pending:
    """Coalesced, not yet written telemetry of one entity."""

    org_id: str
    entity_type: str
    name: str
    patch: dict[str, Any] = field(default_factory=dict)
    msgs: list[Msg] = field(default_factory=list)
    received: float = 0.0
    seqs: dict[str, int] = field(default_factory=dict)  # patch key → stream sequence of its newest message
    newest: int = 0  # the newest stream sequence among ``msgs``
    edge: str = ""  # the edge box it came from (on a hub), "" for our own
    candidates: list[Candidate] = field(default_factory=list)  # messages with a position: track points if due


def merge_into(target: dict[str, Any], key: str, value: Any) -> None:
    """``target[key] = deep_merge(target[key], value)``, in place.

    Only for coalescing: every dict involved was decoded from one message for this write
    and is referenced nowhere else, and copying them for each message of a burst was a
    tenth of the worker's time.
    """
    base = target.get(key)
    if not isinstance(base, dict) or not isinstance(value, dict):
        target[key] = value
        return
    for k, v in value.items():
        merge_into(base, k, v)


def coalesce(pending: Pending, patch: dict[str, Any], seq: int) -> None:
    """Merge one message's ``patch`` (stream sequence ``seq``, 0 for a core message) into ``pending``."""
    target, seqs = pending.patch, pending.seqs
    if not seq or seq >= pending.newest:
        # In stream order (the usual case): newer than every scope held, so no per-scope comparison.
        for key, value in patch.items():
            merge_into(target, key, value)
        if seq:
            seqs.update(dict.fromkeys(patch, seq))
            pending.newest = seq
        return
    for key, value in patch.items():
        held = seqs.get(key, 0)
        if seq >= held:
            merge_into(target, key, value)
            seqs[key] = seq
        else:
            # A redelivered, older message (its node died holding it): it only fills in what
            # the newer ones of this write did not say.
            target[key] = deep_merge(value, target[key])


def parse_subject(subject: str) -> tuple[str, str]:
    """``constellation.telemetry.{org}.{entity}`` → ``(org, entity)``; InvalidMessage otherwise."""
    parts = subject.split(".")
    if len(parts) != 4 or parts[0] != topology.PREFIX or parts[1] != "telemetry":
        raise InvalidMessage(f"unexpected telemetry subject {subject!r}")
    org_id, entity_id = parts[2], parts[3]
    if not topology.TOKEN_RE.match(org_id) or not topology.TOKEN_RE.match(entity_id):
        raise InvalidMessage(f"invalid subject tokens in {subject!r}")
    return org_id, entity_id


class TelemetryWorker(ConsumerWorker):
    """Consumes ``constellation.telemetry.>`` through ``telemetry-processor``."""

    name = "telemetry"
    stream = topology.STREAM_TELEMETRY
    durable = topology.CONSUMER_TELEMETRY
    batch_size = FETCH_BATCH

    def __init__(self, ctx: WorkerContext, state_cache: StateCache) -> None:
        super().__init__(ctx)
        self.state_cache = state_cache
        s = ctx.settings
        self.store = StateStore(ctx.kv_state, "telemetry")
        self.directory = EntityDirectory(ctx.db, ctx.hub)
        self.min_interval = 1.0 / s.telemetry_max_hz
        self.pending: dict[str, Pending] = {}
        self.last_write: dict[str, float] = {}
        self.coalesced = 0
        self.held = 0
        self.order_id = self.stream
        self.last_flush = 0.0

    @property
    def fetch_timeout(self) -> float:  # type: ignore[override]
        # Short fetches while something waits to be written, so writes happen on time.
        return self.min_interval / 2 if self.pending else 1.0

    async def run(self) -> None:
        """Consume telemetry and run the liveness sweep and retention alongside."""
        info = await self.ctx.js.stream_info(self.stream)
        # Sequences restart when a stream is created again: the order mark names the stream's creation.
        self.order_id = f"{self.stream}@{info.created.isoformat() if info.created else ''}"
        sweeper = asyncio.create_task(self._sweep_loop(), name="telemetry-sweep")
        try:
            await super().run()
        finally:
            sweeper.cancel()
            await asyncio.gather(sweeper, return_exceptions=True)
            await self.flush(due_only=False)

    async def handle(self, msg: Msg) -> None:
        """Single-message path (unused: ``handle_batch`` coalesces)."""
        await self.handle_batch([msg])

    async def handle_batch(self, msgs: Sequence[Msg]) -> None:
        """Parse and coalesce a fetched batch, then write every entity that is due."""
        received = time.time()
        now_iso = utc_now()
        for msg in msgs:
            try:
                entity_id, org_id, edge, patch = self._parse(msg, now_iso)
                info = self.directory.cached(entity_id) or await self._lookup(msg, entity_id)
                check_owner(info, org_id, edge)
            except InvalidMessage as exc:
                self.stats.failed += 1
                await self.dead_letter(msg, exc.reason, self.stream)
                await msg.term()
                continue
            except TransientError as exc:
                await self.retry_or_dead_letter(msg, exc)
                continue
            pending = self.pending.get(entity_id)
            if pending is None:
                pending = self.pending[entity_id] = Pending(
                    info.org_id, info.entity_type, info.name, received=received, edge=info.edge
                )
            else:
                self.coalesced += 1
            pending.msgs.append(msg)
            fields = ack_fields(msg)
            seq = fields.stream_seq if fields is not None else 0
            point = candidate(patch, fields.timestamp_ns if fields is not None else time.time_ns())
            if point is not None:
                pending.candidates.append(point)
            coalesce(pending, patch, seq)
            self.held += 1
        backlogged = _pending_after(msgs[-1]) > BACKLOG_PENDING if msgs else False
        if backlogged and self.held < MAX_HELD and time.monotonic() - self.last_flush < BACKLOG_FLUSH:
            return  # more is waiting: keep draining so each write coalesces more messages
        await self.flush(due_only=True)

    async def idle(self) -> None:
        """Nothing fetched: write whatever became due."""
        await self.flush(due_only=True)

    def _parse(self, msg: Msg, now_iso: str) -> tuple[str, str, str, dict[str, Any]]:
        """``(entity_id, org_id, edge, patch)`` of one message; InvalidMessage when it is not telemetry."""
        self.reject_server_reply(msg)
        edge, local = topology.split_edge(msg.subject)
        org_id, entity_id = parse_subject(local)
        if len(msg.data) > MAX_PAYLOAD:
            raise InvalidMessage(f"payload of {len(msg.data)} bytes exceeds {MAX_PAYLOAD}")
        try:
            payload = decode_object(msg.data)
            patch, _ts = to_patch(payload, now_iso)
        except DecodeError as exc:
            raise InvalidMessage(str(exc)) from None
        return entity_id, org_id, edge, patch

    async def _lookup(self, msg: Msg, entity_id: str) -> EntityInfo:
        """The registered entity (a query: not in the directory's memory yet)."""
        info = await self.directory.lookup(entity_id)
        if info is None:
            delivered = msg.metadata.num_delivered if msg.reply else UNKNOWN_ENTITY_RETRIES + 1
            if delivered <= UNKNOWN_ENTITY_RETRIES:
                raise TransientError(f"unknown entity {entity_id} (registry may be catching up)")
            raise InvalidMessage(f"unknown entity {entity_id}: register it before sending telemetry")
        return info

    async def flush(self, due_only: bool) -> None:
        """Write every pending entity whose write interval has passed (all with ``due_only=False``)."""
        if not self.pending:
            return
        now = self.last_flush = time.monotonic()
        due = [e for e in self.pending if not due_only or now - self.last_write.get(e, 0.0) >= self.min_interval]
        if due:
            batch = [(entity_id, self.pending.pop(entity_id)) for entity_id in due]
            self.held -= sum(len(p.msgs) for _, p in batch)
            await self._write_batch(batch)

    async def _write_batch(self, batch: list[tuple[str, Pending]]) -> None:
        """One pipelined CAS write per entity, with its track points; acknowledge its messages once both are done."""
        seen = utc_now()
        interval = self.ctx.settings.track_interval
        sampled: dict[str, list[tuple[int, TrackPoint]]] = {}

        def mutator(entity_id: str, p: Pending) -> Callable[[dict[str, Any]], bool]:
            def mutate(doc: dict[str, Any]) -> bool:
                # Decided on the value being replaced (a CAS retry decides again): one history for all nodes.
                sampled[entity_id] = sample(doc, entity_id, p.candidates, interval) if p.candidates else []
                order = _order_of(doc, self.order_id)
                for scope, value in p.patch.items():
                    seq = p.seqs.get(scope, 0)
                    if seq and seq <= order.get(scope, 0):
                        continue  # another node already wrote a newer message of this scope
                    doc[scope] = deep_merge(doc.get(scope), value) if isinstance(value, dict) else value
                    if seq:
                        order[scope] = seq
                doc[ORDER_FIELD] = {"stream": self.order_id, "scopes": order}
                doc["is_live"] = True
                doc["last_seen"] = seen
                if doc.get("status") not in ("active", "error"):
                    doc["status"] = "active"  # an error stays until the entity reports otherwise
                # The registry names the organisation; a value that claims another one (a device
                # or console write) is repaired here rather than kept hidden by the state cache.
                doc["org_id"] = p.org_id
                if not doc.get("entity_type"):
                    doc["entity_type"] = p.entity_type  # a value written without them (deleted, forged)
                if not doc.get("name"):
                    doc["name"] = p.name
                if p.edge:
                    doc["edge"] = p.edge  # a hub's copy of an edge box's entity (docs/scale-out.md)
                return True

            return mutate

        def defaults(entity_id: str, p: Pending) -> Callable[[], dict[str, Any]]:
            return lambda: new_state(entity_id, p.org_id, p.entity_type, name=p.name)

        jobs: list[Job] = [(eid, mutator(eid, p), defaults(eid, p)) for eid, p in batch]
        outcomes: list[Any] = list(await self.store.merge_many(jobs))
        written = [i for i, o in enumerate(outcomes) if not isinstance(o, BaseException) and sampled.get(batch[i][0])]
        published = await asyncio.gather(
            *(publish_points(self.ctx.js, batch[i][1].org_id, sampled[batch[i][0]]) for i in written),
            return_exceptions=True,
        )
        for i, result in zip(written, published, strict=True):
            if isinstance(result, BaseException):
                # Written but its points not stored: redelivered, the message finds its time among
                # the entity's recent points and publishes them again (``workers/tracks.py``).
                outcomes[i] = TransientError(f"track points of {batch[i][0]} not published: {result}")
        now = time.monotonic()
        for (entity_id, p), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                for msg in p.msgs:
                    await self.retry_or_dead_letter(msg, outcome)
                continue
            self.last_write[entity_id] = now
            for msg in p.msgs:
                await msg.ack()
            self.stats.processed += len(p.msgs)
        self.stats.last_message_at = time.time()

    # ------------------------------------------------------------ liveness
    async def _sweep_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                await self.sweep()
            except Exception:
                log.exception("liveness sweep failed")
            try:
                await asyncio.wait_for(self.stopping.wait(), 1.0)
            except TimeoutError:
                pass

    async def sweep(self) -> int:
        """Mark live entities whose last telemetry is older than the timeout offline."""
        timeout = self.ctx.settings.offline_after
        cache = self.state_cache
        now = self.ctx.clock.now()
        marked = 0
        # The merged documents, not the typed views: once a second over every entity, decoding each
        # view that changed since (all of them under a telemetry flood) would cost more than the sweep.
        for entity_id, doc in list(cache.all().items()):
            if doc.get("is_live") is not True or "." in entity_id or doc.get("edge"):
                continue  # an edge box says when its entities go offline (its status events)
            deadline = offline_deadline(doc, timeout)
            if deadline is None or now < deadline:
                continue
            if entity_id in self.pending:
                continue
            if await self._mark_offline(entity_id, timeout):
                marked += 1
        return marked

    async def _mark_offline(self, entity_id: str, timeout: float) -> bool:
        changed: dict[str, Any] = {}

        def mutate(doc: dict[str, Any]) -> bool:
            deadline = offline_deadline(doc, timeout)
            if not doc.get("is_live") or (deadline is not None and self.ctx.clock.now() < deadline):
                return False  # fresh telemetry arrived (maybe on another node)
            doc["is_live"] = False
            if doc.get("status") != "error":
                doc["status"] = "offline"
            changed.update(doc)
            return True

        await self.store.merge(entity_id, mutate, create=False)
        if changed:
            log.info("entity %s offline (no telemetry for %.0fs)", entity_id, timeout)
        return bool(changed)


def offline_deadline(doc: dict[str, Any], timeout: float) -> float | None:
    """When a live entity goes offline (epoch seconds; ``None`` without a ``last_seen``).

    ``timeout`` (``OVERWATCH_OFFLINE_AFTER``) after its last telemetry, unless that telemetry
    said how long it is valid: a ``stale`` time (CoT's, carried in ``extras.stale``) not older
    than the last telemetry is the deadline instead, shorter or longer.
    """
    seen = parse_time(doc.get("last_seen"))
    if seen is None:
        return None
    extras = doc.get("extras")
    stale = parse_time(extras.get("stale")) if isinstance(extras, dict) else None
    if stale is not None and stale.timestamp() >= seen.timestamp():
        return stale.timestamp()
    return seen.timestamp() + timeout


def check_owner(info: EntityInfo, org_id: str, edge: str) -> None:
    """Refuse a message about an entity from anywhere but its owner: the organisation its subject names
    must be the registry's; an edge box's entity takes data only from that edge's streams on a hub, and
    our own only from our own subjects (``docs/scale-out.md``)."""
    if info.org_id != org_id:
        raise InvalidMessage(f"entity {info.entity_id} belongs to organisation {info.org_id}, not {org_id}")
    if info.edge != edge:
        owner = f"edge box {info.edge}" if info.edge else "this server"
        source = f"edge box {edge}" if edge else "a local subject"
        raise InvalidMessage(f"entity {info.entity_id} is owned by {owner}; refused from {source}")


def _order_of(doc: dict[str, Any], order_id: str) -> dict[str, int]:
    """The stream sequence each scope was last written from (empty when written from another stream)."""
    mark = doc.get(ORDER_FIELD)
    if not isinstance(mark, dict) or mark.get("stream") != order_id or not isinstance(mark.get("scopes"), dict):
        return {}
    return {k: v for k, v in mark["scopes"].items() if isinstance(k, str) and isinstance(v, int)}


def _pending_after(msg: Msg) -> int:
    """Messages still waiting for this consumer, from the ack subject (no server round trip)."""
    try:
        return int(msg.metadata.num_pending or 0)
    except Exception:  # noqa: BLE001 - not a JetStream message (tests publish core messages too)
        return 0
