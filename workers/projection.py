"""Per-node projections: every node reads every message it projects into its own SQLite.

A shared durable consumer hands each message to one node only, which is right for work
done once for everyone (telemetry into KV) and wrong for what each node keeps for itself
(detection and alert history, tracks, commands): with two nodes each would hold half.
A ``ProjectionWorker`` therefore reads its stream through a consumer of its own:

* **named after the node** (``ow-{node id}-{projection}``; the id lives in the data dir,
  ``app/node.py``), ephemeral (``inactive_threshold``: a retired node's consumer
  disappears by itself), in memory, one replica, no acks — JetStream's ordered-consumer
  recipe, driven by pull requests;
* **resumed from a persisted position**: the last stream sequence applied is stored in
  ``projection_cursors`` *in the same SQLite transaction* as what the batch applied, so a
  restart (or ``kill -9``) resumes exactly there — nothing applied twice, nothing skipped;
  an empty database starts at the stream's first message, i.e. rebuilds from the stream;
* **gap-checked**: consumer sequences must follow each other; on a gap (a slow-consumer
  drop, the consumer's server died), a 409/503 on the pull, or a consumer that vanished,
  the consumer is re-created from the cursor.

Side effects outside the transaction (hub notifications, the KV ``commands`` scope) run
after the commit and are idempotent, so a crash between commit and effect only delays them.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

import aiosqlite
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from db import projections as cursors_db
from db import retention as retention_db
from fabric.pull import PullConsumer
from services.directory import EntityDirectory, EntityInfo
from workers.base import Worker, WorkerContext

log = logging.getLogger("overwatch.workers.projection")

Write = Callable[[aiosqlite.Connection], Awaitable[None]]
After = Callable[[], Awaitable[None]]

PRUNE_EVERY_S = 300.0  # seconds between two prunes of a projection's table
CHECK_EVERY = 2.0  # seconds of silence between checks that the consumer still exists
COMMIT_EVERY = 0.25  # seconds: batches arriving within this time are committed together
HOLD_MAX = 20_000  # messages held uncommitted at most
INACTIVE_THRESHOLD = 30.0  # seconds: a consumer nobody pulls from (a stopped or retired node) is removed
REOPEN_STATUSES = frozenset({"409", "503"})  # consumer deleted / no responders: re-create from the cursor


class RegistryWait:
    """Entity lookups that give this node's registry projection a moment to catch up with the stream.

    A projection may read an event before this node's registry has the entity (it was
    registered, or adopted from an edge, a moment earlier on another node). It waits up
    to ``wait`` seconds for it, once per entity: an id still unknown then is not waited
    for again for ``forget`` seconds, so garbage ids cannot stall a projection.
    """

    def __init__(self, directory: EntityDirectory, stopping: asyncio.Event, wait: float = 3.0, forget: float = 30.0):
        self.directory = directory
        self.stopping = stopping
        self.wait = wait
        self.forget = forget
        self._given_up: dict[str, float] = {}

    async def lookup(self, entity_id: str) -> EntityInfo | None:
        """The entity, waiting for the registry if need be; ``None`` if it stays unknown."""
        info = await self.directory.lookup(entity_id)
        if info is not None:
            return info
        since = self._given_up.get(entity_id)
        if since is not None and time.monotonic() - since < self.forget:
            return None
        deadline = time.monotonic() + self.wait
        while info is None and time.monotonic() < deadline and not self.stopping.is_set():
            await asyncio.sleep(0.1)
            info = await self.directory.lookup(entity_id)
        if info is None:
            if len(self._given_up) > 10_000:
                self._given_up.clear()
            self._given_up[entity_id] = time.monotonic()
        return info


@dataclass
class Batch:
    """What one fetched batch does: writes inside the cursor's transaction, then effects after the commit."""

    writes: list[Write] = field(default_factory=list)
    after: list[After] = field(default_factory=list)


class AckFields(NamedTuple):
    """What a JetStream message's reply subject says of it."""

    stream_seq: int
    consumer_seq: int
    timestamp_ns: int  # when the stream stored it
    pending: int


def ack_fields(msg: Msg) -> AckFields | None:
    """Sequences, storage time and backlog from the reply subject, in one split (``None``: a core message).

    ``msg.metadata`` builds nested objects and a datetime per message, which at telemetry
    rates costs more than the rest of the hot path; the tokens are all that is needed.
    ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>`` (9 tokens), or the
    newer ``$JS.ACK.<domain>.<account>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>…``.
    """
    reply = msg.reply
    return _parse_reply(reply) if reply else None


def _parse_reply(reply: str) -> AckFields | None:
    if not reply.startswith("$JS.ACK."):
        return None
    tokens = reply.split(".")
    base = 5 if len(tokens) == 9 else 7 if len(tokens) >= 11 else -1
    if base < 0:
        return None
    try:
        return AckFields(int(tokens[base]), int(tokens[base + 1]), int(tokens[base + 2]), int(tokens[base + 3]))
    except ValueError:
        return None


def stream_time(msg: Msg) -> datetime:
    """When JetStream stored ``msg`` (the same on every node, unlike anyone's clock); now for a core message."""
    fields = ack_fields(msg)
    if fields is None:
        return datetime.now(UTC)
    return datetime.fromtimestamp(fields.timestamp_ns / 1e9, UTC)


def stream_iso(msg: Msg) -> str:
    """``stream_time`` as the ISO 8601 text the rest of the code base stores (milliseconds, ``Z``)."""
    return stream_time(msg).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ProjectionWorker(Worker, abc.ABC):
    """Reads ``stream`` (``filter_subject``) through a per-node consumer into this node's database."""

    stream = ""
    filter_subject = ""
    projection = ""  # short name: the consumer is ``ow-{node}-{projection}``, the cursor ``{projection}``
    adopt_durable = ""  # shared durable whose acknowledged position an existing database starts from
    batch_size = 500
    fetch_timeout = 1.0
    retention: tuple[str, str] | None = None  # (table, hours setting): rows older than that are pruned

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        self.cursor = 0
        self.pending: int | None = None  # messages after the last applied one (None: not known yet)
        self.reopens = 0
        self.caught_up = asyncio.Event()  # set once the projection has applied everything stored
        self._held = Batch()  # prepared, not yet committed (see ``_apply``)
        self._held_seq = 0
        self._held_count = 0
        self._held_since = 0.0  # when the oldest held batch arrived (0: nothing held)
        self._last_prune = 0.0

    @property
    def consumer_name(self) -> str:
        """This node's consumer for this projection."""
        return f"ow-{self.ctx.node_id}-{self.projection}"

    @abc.abstractmethod
    async def prepare(self, msgs: Sequence[Msg]) -> Batch:
        """Turn a batch into writes (run with the cursor, in one transaction) and after-commit effects.

        Anything done here directly must be idempotent: a crash before the commit runs it again.
        """

    async def has_history(self) -> bool:
        """Whether this database already holds what the projection writes (then a first start adopts the
        shared durable's position instead of replaying, so an upgraded node stores nothing twice)."""
        return False

    async def idle(self) -> None:
        """Called when a fetch returned nothing: prune old rows."""
        await self.prune_old()

    async def prune_old(self) -> None:
        """Delete the rows of ``retention``'s table older than its setting says (at most every five minutes)."""
        if self.retention is None or time.monotonic() - self._last_prune <= PRUNE_EVERY_S:
            return
        self._last_prune = time.monotonic()
        table, setting = self.retention
        hours = float(getattr(self.ctx.settings, setting))
        await retention_db.prune(self.ctx.db, table, hours * 3600, now=self.ctx.clock.now())

    async def initial_cursor(self) -> int:
        """The stored cursor; on the first start 0 (rebuild), or the adopted durable's acknowledged position."""
        stored = await cursors_db.load_cursor(self.ctx.db, self.projection)
        if stored is not None:
            return stored
        seq = 0
        if self.adopt_durable and await self.has_history():
            try:
                info = await self.ctx.js.consumer_info(self.stream, self.adopt_durable)
                seq = int(info.ack_floor.stream_seq if info.ack_floor else 0)
            except NotFoundError:
                seq = 0
            log.info("%s: existing history, starting after %s's position %d", self.name, self.adopt_durable, seq)
        await cursors_db.set_cursor(self.ctx.db, self.projection, self.stream, seq)
        return seq

    async def run(self) -> None:
        """Open the consumer at the cursor and apply batches; re-open after a gap or a lost consumer."""
        self.cursor = await self.initial_cursor()
        while not self.stopping.is_set():
            if self.ctx.nc.is_closed or self.ctx.nc.is_draining:
                return
            await self._consume()
            if not self.stopping.is_set():
                self.reopens += 1

    async def _open(self) -> None:
        js = self.ctx.js
        info = await js.stream_info(self.stream)
        last = int(info.state.last_seq or 0)
        if self.cursor > last:
            # The stream was deleted and created again: its sequences start over.
            log.warning(
                "%s: cursor %d beyond %s's last sequence %d; re-reading it", self.name, self.cursor, self.stream, last
            )
            self.cursor = 0
            await cursors_db.set_cursor(self.ctx.db, self.projection, self.stream, 0)
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(self.stream, self.consumer_name)  # this node's, left from before a restart
        created = await js.add_consumer(
            self.stream,
            ConsumerConfig(
                name=self.consumer_name,
                description=f"Overwatch node {self.ctx.node_id}: {self.projection} projection",
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=self.cursor + 1,
                ack_policy=AckPolicy.NONE,
                filter_subject=self.filter_subject,
                inactive_threshold=INACTIVE_THRESHOLD,
                mem_storage=True,
                num_replicas=1,
                max_waiting=16,
            ),
        )
        self.pending = int(created.num_pending or 0)
        if self.pending == 0:
            self.caught_up.set()

    async def _consume(self) -> None:
        await self._open()
        log.info("%s: reading %s after sequence %d (%s)", self.name, self.stream, self.cursor, self.consumer_name)
        consumer = PullConsumer(self.ctx.nc, self.stream, self.consumer_name, batch=self.batch_size)
        await consumer.start()
        expected = 1
        quiet_since = time.monotonic()
        try:
            while not self.stopping.is_set():
                if self.ctx.nc.is_closed or self.ctx.nc.is_draining:
                    return
                timeout = self.fetch_timeout
                if self._held_since:
                    timeout = max(0.005, min(timeout, self._held_since + COMMIT_EVERY - time.monotonic()))
                msgs = await consumer.fetch(timeout)
                if not msgs:
                    await self.commit()
                    if consumer.last_status in REOPEN_STATUSES and not await self._exists():
                        log.info(
                            "%s: consumer gone (%s); re-opening at %d", self.name, consumer.last_status, self.cursor
                        )
                        return
                    await self.idle()
                    if time.monotonic() - quiet_since > CHECK_EVERY:
                        quiet_since = time.monotonic()
                        if not await self._exists():
                            log.info("%s: consumer gone; re-opening at %d", self.name, self.cursor)
                            return
                    continue
                quiet_since = time.monotonic()
                run: list[Msg] = []
                for msg in msgs:
                    fields = ack_fields(msg)
                    if fields is None or fields.consumer_seq != expected:
                        break
                    expected += 1
                    run.append(msg)
                if run:
                    await self._apply(run)
                if len(run) < len(msgs):
                    await self.commit()
                    log.info("%s: gap in delivery after stream sequence %d; re-opening", self.name, self.cursor)
                    return
            await self.commit()  # stopping: keep what was applied
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def _exists(self) -> bool:
        try:
            await asyncio.wait_for(self.ctx.js.consumer_info(self.stream, self.consumer_name), 2.0)
        except NotFoundError:
            return False
        except Exception:  # noqa: BLE001 - NATS unreachable: keep the consumer, try again later
            return True
        return True

    async def _apply(self, msgs: Sequence[Msg]) -> None:
        """Prepare a batch and hold it; what is held is committed ``COMMIT_EVERY`` seconds after the first of it.

        At telemetry rates a fetch returns a few messages at a time: committing each would be
        hundreds of transactions a second. Held batches are committed together (one
        transaction, one cursor write), at the latest a quarter second after they arrived
        (``_consume`` shortens its fetch to that). A crash loses nothing: what was held is
        not committed, and its messages are read again from the stored position.
        """
        batch = await self.prepare(msgs)
        last = ack_fields(msgs[-1])
        assert last is not None  # checked on the way in (``_consume``)
        self._held.writes += batch.writes
        self._held.after += batch.after
        self._held_seq = last.stream_seq
        self._held_count += len(msgs)
        self.pending = last.pending
        if not self._held_since:
            self._held_since = time.monotonic()
        if time.monotonic() - self._held_since >= COMMIT_EVERY or self._held_count >= HOLD_MAX:
            await self.commit()

    async def commit(self) -> None:
        """Apply what is held, and its last stream sequence, in one transaction; then the after-commit effects."""
        if not self._held_count:
            return
        held, seq, count = self._held, self._held_seq, self._held_count
        self._held, self._held_count, self._held_since = Batch(), 0, 0.0

        async def run(conn: aiosqlite.Connection) -> None:
            for write in held.writes:
                await write(conn)
            await cursors_db.save_cursor(conn, self.projection, self.stream, seq)

        await self.ctx.db.write(run)
        self.cursor = seq
        self.stats.processed += count
        self.stats.last_message_at = time.time()
        if self.pending == 0:
            self.caught_up.set()
        for effect in held.after:
            try:
                await effect()
            except Exception:
                log.exception("%s: after-commit effect failed", self.name)

    def status(self) -> dict[str, object]:
        """Consumer, stream, cursor and backlog, for ``/nats/server`` and metrics."""
        return {
            "projection": self.projection,
            "consumer": self.consumer_name,
            "stream": self.stream,
            "cursor": self.cursor,
            "pending": self.pending,
            "reopens": self.reopens,
        }
