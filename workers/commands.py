"""CommandWorker: follows commands and device acks on ``constellation.commands.>``.

* ``constellation.commands.{org}.{entity}.ack`` — a device's ``accepted`` /
  ``completed`` / ``failed`` (or ``rejected``) moves the command forward, only if the
  command is that entity's in that organisation (else it is dead-lettered with the reason);
* ``constellation.commands.{org}.{entity}`` — a command; ours are already recorded,
  one published straight to NATS by another tool is recorded as ``delivered``.

Alongside, it expires commands past their TTL and, when an entity comes back live,
delivers the commands that were queued for it.
"""

from __future__ import annotations

import asyncio
import logging

from nats.aio.msg import Msg

from core import topology
from core.contracts.commands import CommandAck, CommandMessage
from core.contracts.common import DecodeError, decode
from core.errors import Invalid, InvalidMessage, NotFound, TransientError
from services.commands import CommandService
from services.state_cache import StateCache
from workers.base import ConsumerWorker, WorkerContext

log = logging.getLogger("overwatch.workers.commands")

MAX_PAYLOAD = 64 * 1024


class CommandWorker(ConsumerWorker):
    """Consumes ``constellation.commands.>`` through ``command-processor``."""

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
        """Apply one command or ack message."""
        self.reject_server_reply(msg)
        parts = msg.subject.split(".")
        is_ack = len(parts) == 5 and parts[4] == "ack"
        if not (len(parts) == 4 or is_ack) or not all(topology.TOKEN_RE.match(p) for p in parts[2:4]):
            raise InvalidMessage(f"unexpected command subject {msg.subject!r}")
        org_id, entity_id = parts[2], parts[3]
        if len(msg.data) > MAX_PAYLOAD:
            raise InvalidMessage(f"payload of {len(msg.data)} bytes exceeds {MAX_PAYLOAD}")
        service = self.commands
        if is_ack:
            if entity_id == "broadcast":
                raise InvalidMessage("acks must come from an entity, not 'broadcast'")
            try:
                ack = decode(msg.data, CommandAck)
            except DecodeError as exc:
                raise InvalidMessage(str(exc)) from None
            try:
                await service.acknowledge(ack.command_id, entity_id, ack.status, ack.detail, org_id=org_id)
            except Invalid as exc:
                raise InvalidMessage(exc.detail) from None  # another organisation's or entity's command
            except NotFound as exc:
                if msg.metadata.num_delivered < 3:
                    # The ack may have overtaken the command's own bookkeeping on this node.
                    raise TransientError(exc.detail) from None
                raise InvalidMessage(exc.detail) from None
            return
        try:
            command = decode(msg.data, CommandMessage)
        except DecodeError as exc:
            raise InvalidMessage(str(exc)) from None
        if command.org_id != org_id or (entity_id != "broadcast" and command.entity_id != entity_id):
            raise InvalidMessage("command payload does not match its subject")
        if entity_id != "broadcast":
            await service.record_external(command)
