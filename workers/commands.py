"""Commands on ``constellation.commands.>``: the shared ``CommandWorker`` and the per-node ``CommandProjector``.

Subjects (``docs/nats.md``):

* ``constellation.commands.{org}.{entity}`` — a command for a device (ours, or one
  published straight to NATS by another tool, then recorded as ``delivered``);
* ``constellation.commands.{org}.{entity}.ack`` — a device's ``accepted`` / ``completed`` /
  ``failed`` (or ``rejected``), only for a command of that entity in that organisation;
* ``constellation.commands.{org}.{entity}.state.{command_id}`` — the command's journal
  (``app/commands.py``): every change a node made;
* ``constellation.commands.{org}.{entity}.request.{command_id}`` — on an edge box, a hub's
  command sourced from the hub's outbox: queued here and delivered like one of ours.

The ``CommandProjector`` (one per node, ``workers/projection.py``) applies all of them, in
stream order and stamped with the stream's time, to this node's SQLite: every node holds
the same command history. The ``CommandWorker`` reads the shared durable
``command-processor`` to dead-letter what is invalid (once, not on every node), and runs
the node's dispatch and expiry loop: queued commands go out when their entity comes back
(one node delivers, the journal's compare-and-set decides which), expired ones are closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import msgspec
from nats.aio.msg import Msg

from core import topology
from core.contracts.commands import CommandAck, CommandMessage
from core.contracts.common import DecodeError, decode
from core.errors import Invalid, InvalidMessage, NotFound, TransientError
from db import commands as commands_db
from db.commands import CommandRow
from services.commands import CommandService, JournalRecord, external_row
from services.directory import EntityDirectory
from services.state_cache import StateCache
from workers.base import ConsumerWorker, WorkerContext, server_reply
from workers.projection import Batch, ProjectionWorker, stream_iso

log = logging.getLogger("overwatch.workers.commands")

MAX_PAYLOAD = 64 * 1024


class CommandSubject(msgspec.Struct, frozen=True):
    """What a subject on the commands stream is."""

    kind: str  # "command", "ack", "state" or "request"
    org_id: str
    entity_id: str
    command_id: str = ""


def parse_command_subject(subject: str) -> CommandSubject:
    """Classify a commands-stream subject; ``InvalidMessage`` for any other shape."""
    parts = subject.split(".")
    if len(parts) < 4 or parts[0] != topology.PREFIX or parts[1] != "commands":
        raise InvalidMessage(f"unexpected command subject {subject!r}")
    if not all(topology.TOKEN_RE.match(p) for p in parts[2:]):
        raise InvalidMessage(f"invalid tokens in command subject {subject!r}")
    org_id, entity_id = parts[2], parts[3]
    if len(parts) == 4:
        return CommandSubject("command", org_id, entity_id)
    if len(parts) == 5 and parts[4] == "ack":
        if entity_id == "broadcast":
            raise InvalidMessage("acks must come from an entity, not 'broadcast'")
        return CommandSubject("ack", org_id, entity_id)
    if len(parts) == 6 and parts[4] in ("state", "request"):
        return CommandSubject(parts[4], org_id, entity_id, parts[5])
    raise InvalidMessage(f"unexpected command subject {subject!r}")


def decode_record(data: bytes, subject: CommandSubject) -> CommandRow:
    """A journal (or request) record whose command is the one its subject names."""
    try:
        record = msgspec.json.decode(data, type=JournalRecord)
    except msgspec.DecodeError as exc:
        raise InvalidMessage(f"invalid journal record: {exc}") from None
    row = record.row
    if (row.org_id, row.entity_id, row.command_id) != (subject.org_id, subject.entity_id, subject.command_id):
        raise InvalidMessage("journal record does not match its subject")
    if row.status not in ("queued", "delivered", "accepted", "completed", "failed", "expired"):
        raise InvalidMessage(f"unknown command status {row.status!r}")
    return row


class CommandWorker(ConsumerWorker):
    """Consumes ``constellation.commands.>`` through the shared ``command-processor``: dead letters; dispatch loop."""

    name = "commands"
    stream = topology.STREAM_COMMANDS
    durable = topology.CONSUMER_COMMAND
    batch_size = 200

    def __init__(self, ctx: WorkerContext, state_cache: StateCache, commands: CommandService) -> None:
        super().__init__(ctx)
        self.state_cache = state_cache
        self.commands = commands
        self.came_back: asyncio.Queue[str] = asyncio.Queue()
        self.state_cache.on_live_change(self._on_live_change)

    def _on_live_change(self, entity_id: str, live: bool, _view: dict[str, object]) -> None:
        if live:
            self.came_back.put_nowait(entity_id)

    async def run(self) -> None:
        """Consume, and dispatch/expire alongside."""
        side = asyncio.create_task(self._dispatch_loop(), name="commands-dispatch")
        try:
            await super().run()
        finally:
            side.cancel()
            await asyncio.gather(side, return_exceptions=True)

    async def _dispatch_loop(self) -> None:
        service = self.commands
        while not self.stopping.is_set():
            try:
                entity_id = await asyncio.wait_for(self.came_back.get(), 1.0)
            except TimeoutError:
                entity_id = None
            try:
                if entity_id is not None:
                    await service.dispatch_queued(entity_id)
                await service.expire_due()
            except Exception:
                log.exception("command dispatch/expiry failed")

    async def handle(self, msg: Msg) -> None:
        """Validate one message; what is valid is applied by every node's projector."""
        self.reject_server_reply(msg)
        subject = parse_command_subject(msg.subject)
        if len(msg.data) > MAX_PAYLOAD:
            raise InvalidMessage(f"payload of {len(msg.data)} bytes exceeds {MAX_PAYLOAD}")
        if subject.kind in ("state", "request"):
            decode_record(msg.data, subject)
            return
        if subject.kind == "ack":
            try:
                ack = decode(msg.data, CommandAck)
            except DecodeError as exc:
                raise InvalidMessage(str(exc)) from None
            row = await commands_db.get_command(self.ctx.db, ack.command_id)
            try:
                self.commands.check_ack(row, ack.command_id, subject.entity_id, subject.org_id)
            except Invalid as exc:
                raise InvalidMessage(exc.detail) from None  # another organisation's or entity's command
            except NotFound as exc:
                if msg.metadata.num_delivered < 3:
                    # The ack may have overtaken the command's journal on this node.
                    raise TransientError(exc.detail) from None
                raise InvalidMessage(exc.detail) from None
            return
        try:
            command = decode(msg.data, CommandMessage)
        except DecodeError as exc:
            raise InvalidMessage(str(exc)) from None
        if command.org_id != subject.org_id or (
            subject.entity_id != "broadcast" and command.entity_id != subject.entity_id
        ):
            raise InvalidMessage("command payload does not match its subject")


class CommandProjector(ProjectionWorker):
    """This node's command history (``ow-{node}-commands``): journal, requests, commands and acks, in order."""

    name = "commands-projection"
    stream = topology.STREAM_COMMANDS
    filter_subject = topology.SUBJECT_COMMANDS_ALL
    projection = "commands"
    adopt_durable = topology.CONSUMER_COMMAND
    batch_size = 500
    overrides_expired = False  # the edge variant: the edge's word replaces an expiry a hub only inferred

    def __init__(self, ctx: WorkerContext, commands: CommandService) -> None:
        super().__init__(ctx)
        self.commands = commands
        self.skipped = 0
        self.directory = EntityDirectory(ctx.db, ctx.hub)

    async def _owned_by(self, entity_id: str, edge: str) -> bool:
        """Whether this node's registry says ``edge`` owns the entity (what a hub applies from an edge)."""
        info = await self.directory.lookup(entity_id)
        return info is not None and info.edge == edge

    async def has_history(self) -> bool:
        """An upgraded node already recorded commands through the shared durable."""
        return bool(await self.ctx.db.scalar("SELECT 1 FROM commands LIMIT 1"))

    async def prepare(self, msgs: Sequence[Msg]) -> Batch:
        """Every valid message becomes a step of the batch's transaction, in stream order."""
        steps: list[tuple[CommandSubject, Msg]] = []
        for msg in msgs:
            if server_reply(msg) or len(msg.data) > MAX_PAYLOAD:
                self.skipped += 1
                continue
            edge, local = topology.split_edge(msg.subject)
            try:
                subject = parse_command_subject(local)
                if edge and not await self._owned_by(subject.entity_id, edge):
                    raise InvalidMessage(f"entity {subject.entity_id} is not edge box {edge}'s")
                steps.append((subject, msg))
            except InvalidMessage:
                self.skipped += 1  # the shared worker dead-letters it
        changed: list[CommandRow] = []
        requested: list[CommandRow] = []
        service = self.commands
        overrides = self.overrides_expired

        async def write(conn: Any) -> None:
            changed.clear()
            requested.clear()
            for subject, msg in steps:
                try:
                    row = await self._step(conn, subject, msg, requested)
                except InvalidMessage:
                    self.skipped += 1
                    continue
                if row is not None:
                    changed.append(row)

        async def after() -> None:
            for row in changed:
                await service.changed(row, overrides)
            for row in requested:
                await service.dispatch_if_live(row)

        batch = Batch()
        batch.writes.append(write)
        batch.after.append(after)
        return batch

    async def _step(
        self, conn: Any, subject: CommandSubject, msg: Msg, requested: list[CommandRow]
    ) -> CommandRow | None:
        service = self.commands
        when = stream_iso(msg)
        if subject.kind == "state":
            row = decode_record(msg.data, subject)
            changed = await service.apply_record_in(conn, row, overrides_expired=self.overrides_expired)
            if changed is not None and changed.status == "queued":
                requested.append(changed)  # queued by another node: deliver it if its entity is live here
            return changed
        if subject.kind == "request":
            row = decode_record(msg.data, subject)
            # A hub's command, on this edge: queued here, whatever the hub last knew of it.
            queued = msgspec.structs.replace(row, status="queued", detail="from the hub", delivered_at=None)
            inserted = await service.apply_record_in(conn, queued)
            if inserted is not None:
                requested.append(inserted)
            return inserted
        if subject.kind == "ack":
            try:
                ack = decode(msg.data, CommandAck)
            except DecodeError:
                raise InvalidMessage("invalid ack") from None
            return await service.apply_ack_in(
                conn,
                ack.command_id,
                subject.entity_id,
                subject.org_id,
                ack.status,
                ack.detail,
                when,
                overrides_expired=self.overrides_expired,
            )
        if subject.entity_id == "broadcast":
            return None
        try:
            command = decode(msg.data, CommandMessage)
        except DecodeError:
            raise InvalidMessage("invalid command") from None
        if command.org_id != subject.org_id or command.entity_id != subject.entity_id:
            raise InvalidMessage("command payload does not match its subject")
        # Ours were journalled before they were published (a no-op here); anyone else's is recorded as delivered.
        return await service.apply_record_in(conn, external_row(command, when))
