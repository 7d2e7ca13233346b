"""TelemetryWorker: telemetry → EntityState scopes (CAS), tracks in SQLite, liveness sweep.

Bursts coalesce per entity: messages fetched within one write interval are merged
(latest value of each field wins) and written as one CAS update, at most
``OVERWATCH_TELEMETRY_MAX_HZ`` times per second per entity. A message is acknowledged
only after the write that contains it succeeded, so ``kill -9`` at any moment loses
nothing JetStream acknowledged. The liveness sweep marks silent entities offline
(the default offline rule, ``workers/rules.py``, alerts on it; ``workers/status_events.py`` publishes it).
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
from core.contracts.telemetry import position_of, to_patch
from core.errors import InvalidMessage, TransientError
from core.timefmt import parse_time
from db import retention
from db import tracks as tracks_db
from db.tracks import TrackPoint
from fabric.state_store import Job, StateStore, deep_merge
from services.directory import EntityDirectory, EntityInfo
from services.state_cache import StateCache
from workers.base import ConsumerWorker, WorkerContext

log = logging.getLogger("overwatch.workers.telemetry")

MAX_PAYLOAD = 64 * 1024  # bytes; larger telemetry is dead-lettered
UNKNOWN_ENTITY_RETRIES = 2  # deliveries to wait for a registry that is still catching up
MAX_HELD = 15_000  # un-acked messages held for coalescing (below the consumer's max_ack_pending)
BACKLOG_FLUSH = 0.5  # seconds between writes while a backlog is drained (more coalescing, fewer writes)
BACKLOG_PENDING = 5_000  # messages still waiting in the stream that count as a backlog


@dataclass
class Pending:
    """Coalesced, not yet written telemetry of one entity."""

    org_id: str
    entity_type: str
    name: str
    patch: dict[str, Any] = field(default_factory=dict)
    msgs: list[Msg] = field(default_factory=list)
    received: float = 0.0
    newest: int = 0  # the highest stream sequence among ``msgs``


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
    batch_size = 2000

    def __init__(self, ctx: WorkerContext, state_cache: StateCache) -> None:
        super().__init__(ctx)
        self.state_cache = state_cache
        s = ctx.settings
        self.store = StateStore(ctx.kv_state, "telemetry")
        self.directory = EntityDirectory(ctx.db, ctx.hub)
        self.min_interval = 1.0 / s.telemetry_max_hz
        self.pending: dict[str, Pending] = {}
        self.last_write: dict[str, float] = {}
        self.last_track: dict[str, float] = {}
        self.track_buffer: list[TrackPoint] = []
        self.coalesced = 0
        self.applied_seq: dict[str, int] = {}  # per entity: the newest stream sequence written (this process)
        self.stale = 0  # redeliveries older than what was already applied: acknowledged, not applied
        self.held = 0
        self.last_flush = 0.0

    @property
    def fetch_timeout(self) -> float:  # type: ignore[override]
        # Short fetches while something waits to be written, so writes happen on time.
        return self.min_interval / 2 if self.pending else 1.0

    async def run(self) -> None:
        """Consume telemetry and run the liveness sweep and retention alongside."""
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
                entity_id, info, patch = await self._parse(msg, now_iso)
            except InvalidMessage as exc:
                self.stats.failed += 1
                await self.dead_letter(msg, exc.reason, self.stream)
                await msg.term()
                continue
            except TransientError as exc:
                await self.retry_or_dead_letter(msg, exc)
                continue
            pending = self.pending.get(entity_id)
            seq = msg.metadata.sequence.stream if msg.reply else 0
            if seq and seq <= max(self.applied_seq.get(entity_id, 0), pending.newest if pending else 0):
                # JetStream redelivers what a crash left unacknowledged, not necessarily in order: a message
                # older than one already taken would roll the entity's state back.
                self.stale += 1
                await msg.ack()
                continue
            if pending is None:
                pending = self.pending[entity_id] = Pending(info.org_id, info.entity_type, info.name, received=received)
            else:
                self.coalesced += 1
            pending.patch = deep_merge(pending.patch, patch)
            pending.msgs.append(msg)
            pending.newest = max(pending.newest, seq)
            self.held += 1
        backlogged = _pending_after(msgs[-1]) > BACKLOG_PENDING if msgs else False
        if backlogged and self.held < MAX_HELD and time.monotonic() - self.last_flush < BACKLOG_FLUSH:
            return  # more is waiting: keep draining so each write coalesces more messages
        await self.flush(due_only=True)

    async def idle(self) -> None:
        """Nothing fetched: write whatever became due."""
        await self.flush(due_only=True)

    async def _parse(self, msg: Msg, now_iso: str) -> tuple[str, EntityInfo, dict[str, Any]]:
        self.reject_server_reply(msg)
        org_id, entity_id = parse_subject(msg.subject)
        if len(msg.data) > MAX_PAYLOAD:
            raise InvalidMessage(f"payload of {len(msg.data)} bytes exceeds {MAX_PAYLOAD}")
        try:
            payload = decode_object(msg.data)
            patch, _ts = to_patch(payload, now_iso)
        except DecodeError as exc:
            raise InvalidMessage(str(exc)) from None
        info = await self.directory.lookup(entity_id)
        if info is None:
            delivered = msg.metadata.num_delivered if msg.reply else UNKNOWN_ENTITY_RETRIES + 1
            if delivered <= UNKNOWN_ENTITY_RETRIES:
                raise TransientError(f"unknown entity {entity_id} (registry may be catching up)")
            raise InvalidMessage(f"unknown entity {entity_id}: register it before sending telemetry")
        if info.org_id != org_id:
            raise InvalidMessage(f"entity {entity_id} belongs to organisation {info.org_id}, not {org_id}")
        return entity_id, info, patch

    async def flush(self, due_only: bool) -> None:
        """Write every pending entity whose write interval has passed (all with ``due_only=False``)."""
        if not self.pending:
            await self._write_tracks()
            return
        now = self.last_flush = time.monotonic()
        due = [e for e in self.pending if not due_only or now - self.last_write.get(e, 0.0) >= self.min_interval]
        if due:
            batch = [(entity_id, self.pending.pop(entity_id)) for entity_id in due]
            self.held -= sum(len(p.msgs) for _, p in batch)
            await self._write_batch(batch)
        await self._write_tracks()

    async def _write_batch(self, batch: list[tuple[str, Pending]]) -> None:
        """One pipelined CAS write per entity; acknowledge each entity's messages once written."""
        seen = utc_now()
        finals: list[dict[str, Any]] = [{} for _ in batch]

        def mutator(p: Pending, final: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
            def mutate(doc: dict[str, Any]) -> bool:
                for scope, value in p.patch.items():
                    doc[scope] = deep_merge(doc.get(scope), value) if isinstance(value, dict) else value
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
                final.clear()
                final.update(doc)
                return True

            return mutate

        def defaults(entity_id: str, p: Pending) -> Callable[[], dict[str, Any]]:
            return lambda: new_state(entity_id, p.org_id, p.entity_type, name=p.name)

        jobs: list[Job] = [(eid, mutator(p, finals[i]), defaults(eid, p)) for i, (eid, p) in enumerate(batch)]
        outcomes = await self.store.merge_many(jobs)
        now = time.monotonic()
        for (entity_id, p), outcome, final in zip(batch, outcomes, finals, strict=True):
            if isinstance(outcome, BaseException):
                for msg in p.msgs:
                    await self.retry_or_dead_letter(msg, outcome)
                continue
            self.last_write[entity_id] = now
            self.applied_seq[entity_id] = max(self.applied_seq.get(entity_id, 0), p.newest)
            for msg in p.msgs:
                await msg.ack()
            self.stats.processed += len(p.msgs)
            self._record_track(entity_id, p, final)
        self.stats.last_message_at = time.time()

    def _record_track(self, entity_id: str, p: Pending, doc: dict[str, Any]) -> None:
        position = position_of(p.patch)
        if position is None:
            return
        now = self.ctx.clock.now()
        if now - self.last_track.get(entity_id, 0.0) < self.ctx.settings.track_interval:
            return
        self.last_track[entity_id] = now
        vfr = doc.get("vfr") or {}
        power = doc.get("power") or {}
        self.track_buffer.append(
            TrackPoint(
                entity_id=entity_id,
                ts=now,
                latitude=position[0],
                longitude=position[1],
                altitude=position[2],
                heading=_float(vfr.get("heading")),
                speed=_float(vfr.get("groundspeed")),
                battery=_float(power.get("battery_remaining")),
            )
        )

    async def _write_tracks(self) -> None:
        if not self.track_buffer:
            return
        points, self.track_buffer = self.track_buffer, []
        try:
            await tracks_db.insert_points(self.ctx.db, points)
        except Exception:
            log.exception("storing %d track points failed", len(points))

    # ------------------------------------------------------------ liveness
    async def _sweep_loop(self) -> None:
        last_prune = 0.0
        while not self.stopping.is_set():
            try:
                await self.sweep()
                if time.monotonic() - last_prune > 300:
                    last_prune = time.monotonic()
                    s = self.ctx.settings
                    keep_s = s.track_retention_hours * 3600
                    await retention.prune(self.ctx.db, "tracks", keep_s, now=self.ctx.clock.now())
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
        for entity_id, view in list(cache.views().items()):
            if not view.is_live or "." in entity_id:
                continue
            deadline = offline_deadline(view.doc, timeout)
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


def _pending_after(msg: Msg) -> int:
    """Messages still waiting for this consumer, from the ack subject (no server round trip)."""
    try:
        return int(msg.metadata.num_pending or 0)
    except Exception:  # noqa: BLE001 - not a JetStream message (tests publish core messages too)
        return 0


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
