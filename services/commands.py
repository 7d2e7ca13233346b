"""The command service: send commands to entities and follow them to completion.

``send`` stores the command as ``queued`` and writes it to the command's journal
(``constellation.commands.{org}.{entity}.state.{command_id}``); if the entity is live it
is published at once on ``constellation.commands.{org}.{entity}`` and becomes
``delivered``. Queued commands are published when the entity comes back, and expire
after their TTL. Acks from the device move the command forward.

Several nodes, one truth: every change a node makes (queued, delivered, expired) is a
journal record, written with the journal subject's last sequence as expected — a
compare-and-set on JetStream — so exactly one node delivers a command, however many see
its entity come back. Every node's ``CommandProjector`` (``workers/commands.py``) applies
the journal and the device acks, in stream order, to its own SQLite: all nodes hold the
same history. Statuses only move forward (``RANK``), and the entity's ``commands`` scope
in KV is merged entry by entry with CAS, so no node ever writes back an older or partial
list over a newer one.

A command for an entity an edge box owns (``docs/scale-out.md``) is not published here:
it goes to the hub's outbox for that edge, which the edge sources when its link is up
and delivers like one of its own; the edge's journal and the device's acks come back.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import aiosqlite
import msgspec
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from core import topology
from core.clock import SYSTEM_CLOCK, Clock, utc_iso
from core.contracts.commands import RANK, TERMINAL, CommandMessage, check_params
from core.contracts.common import DecodeError, encode, new_id, utc_now
from core.errors import AppError, Invalid, NotFound, Unavailable
from core.structs import as_view
from core.topics import Topic
from db import commands as commands_db
from db import registry as registry_db
from db.commands import CommandRow
from db.database import Database
from db.registry import EntityRow
from fabric.pubacks import wrong_last_sequence
from fabric.state_store import StateStore
from services.audit import SYSTEM_ACTOR, Actor, AuditService
from services.auth.principal import Principal
from services.directory import edge_of_metadata
from services.hub import Hub, Update
from services.schemas import CommandCreate, CommandView
from services.state_cache import StateCache

log = logging.getLogger(__name__)

RECENT_IN_STATE = 10


class AdminOnly(AppError):
    """The command is allowed to admins only (a forced disarm)."""

    status_code = 403
    title = "Forbidden"


def _is_admin(actor: Actor, org_id: str) -> bool:
    principal = actor.principal
    # The system itself (an internal caller without a principal) may; a person or key needs admin.
    return principal.can_in("admin", org_id) if isinstance(principal, Principal) else True


def to_view(row: CommandRow) -> CommandView:
    """API view of a command row."""
    return as_view(row, CommandView, params=row.params_dict)


CLAIM_RETRIES = 6
PUBLISH_RETRIES = 3


class JournalRecord(msgspec.Struct, kw_only=True):
    """One change of a command, as its journal stores it."""

    row: CommandRow
    node: str = ""  # the node that made the change


def edge_owner(entity: EntityRow | None) -> str:
    """The edge box that owns an entity (``metadata.edge``, set when a hub adopted it), or ``""``."""
    return edge_of_metadata(entity.metadata) if entity is not None else ""


def moves_forward(current: str, status: str) -> bool:
    """Whether ``status`` is a step forward from ``current`` (terminal states never move)."""
    return current not in TERMINAL and RANK[status] > RANK[current]


def merge_recent(
    recent: Any, entry: dict[str, Any], limit: int = 10, overrides_expired: bool = False
) -> list[dict[str, Any]] | None:
    """The ``commands.recent`` list with ``entry`` merged in, or ``None`` when it changes nothing.

    Entries are kept by command id and only ever move forward (an ``accepted`` entry may
    take a newer progress detail); the ``limit`` newest by ``issued_at`` are kept. What a
    writer knows about one command never replaces what another wrote about others.
    """
    entries = (
        [e for e in recent if isinstance(e, dict) and isinstance(e.get("command_id"), str)]
        if isinstance(recent, list)
        else []
    )
    by_id = {e["command_id"]: e for e in entries}
    old = by_id.get(entry["command_id"])
    old_status = old.get("status") if old is not None else None
    if isinstance(old_status, str) and old_status in RANK:
        assert old is not None
        progress = entry["status"] == old_status == "accepted" and entry.get("detail") != old.get("detail")
        progress = progress and str(entry.get("updated_at", "")) >= str(old.get("updated_at", ""))
        inferred = overrides_expired and old_status == "expired" and entry["status"] != "expired"
        if not (inferred or progress or moves_forward(old_status, entry["status"])):
            return None
    by_id[entry["command_id"]] = entry
    kept = sorted(by_id.values(), key=lambda e: (str(e.get("issued_at", "")), e["command_id"]), reverse=True)[:limit]
    if old is None and entry not in kept:
        return None  # older than every command the scope keeps
    return kept


class CommandService:
    """Send, dispatch, advance and expire commands."""

    def __init__(
        self,
        db: Database,
        js: JetStreamContext,
        store: StateStore,
        cache: StateCache,
        hub: Hub,
        default_ttl: float,
        audit: AuditService,
        clock: Clock = SYSTEM_CLOCK,
        node_id: str = "",
    ) -> None:
        self.db = db
        self.js = js
        self.store = store
        self.cache = cache
        self.hub = hub
        self.default_ttl = default_ttl
        self.audit = audit
        self.clock = clock
        self.node_id = node_id
        self.claims_lost = 0  # deliveries or expiries another node made first

    async def send(self, org_id: str, entity_id: str, body: CommandCreate, actor: Actor = SYSTEM_ACTOR) -> CommandView:
        """Queue a command for an entity and deliver it now if the entity is live."""
        entity = await registry_db.get_entity(self.db, entity_id)
        if entity is None or entity.org_id != org_id:
            raise NotFound(f"entity {entity_id} not found")
        try:
            check_params(body.command, body.params)
            if body.command == "disarm" and body.params.get("force") is True and not _is_admin(actor, org_id):
                raise AdminOnly("a forced disarm (disarm in flight) needs admin permission in the organisation")
        except AdminOnly as exc:
            await self.audit.record(
                actor, "command.send", target=f"{entity_id}:disarm", org_id=org_id, outcome="denied", detail=exc.detail
            )
            raise
        except DecodeError as exc:
            await self.audit.record(
                actor,
                "command.send",
                target=f"{entity_id}:{body.command}",
                org_id=org_id,
                outcome="failure",
                detail=str(exc),
            )
            raise Invalid(str(exc)) from None
        now = datetime.fromtimestamp(self.clock.now(), UTC)
        issued_by = actor.label
        ttl = body.ttl_s or self.default_ttl
        edge = edge_owner(entity)
        row = CommandRow(
            command_id=new_id(),
            org_id=org_id,
            entity_id=entity_id,
            command=body.command,
            params=msgspec.json.encode(body.params).decode(),
            status="queued",
            detail=f"for edge {edge}: waiting for its link" if edge else "",
            issued_by=issued_by,
            issued_at=_iso(now),
            updated_at=_iso(now),
            expires_at=_iso(now + timedelta(seconds=ttl)),
        )
        await commands_db.insert_command(self.db, row)
        await self.audit.record(
            actor,
            "command.send",
            target=f"{entity_id}:{body.command}",
            org_id=org_id,
            detail=f"command {row.command_id}",
            changes={"params": [None, body.params]},
        )
        try:
            if not await self._journal_new(row):
                # The entity came back meanwhile and its queued commands, this one among them, were
                # dispatched (and journalled) by this node's dispatcher: report what that made of it.
                current = await commands_db.get_command(self.db, row.command_id)
                return to_view(current or row)
            if edge:
                await self._to_edge(edge, row)
        except (NatsError, APIError, TimeoutError) as exc:
            raise Unavailable(f"command {row.command_id} stored but not journalled: NATS answered {exc}") from None
        view = self.cache.view(entity_id)
        if not edge and view is not None and view.is_live:
            row = await self.dispatch(row) or row
        else:
            await self._changed(row)
        return to_view(row)

    async def _journal_new(self, row: CommandRow) -> bool:
        """Journal a new command; False when its journal already has a record (a dispatcher claimed it first)."""
        try:
            await self._journal(row, expect=0)
        except APIError as exc:
            if not wrong_last_sequence(exc.err_code):
                raise
            _seq, last = await self.last_record(row)
            if last is None or last.row.command_id != row.command_id:
                raise
            return False
        return True

    async def _journal(self, row: CommandRow, expect: int) -> int:
        """Write ``row`` to its journal if the subject's last sequence is ``expect``; return the new sequence."""
        ack = await self.js.publish(
            topology.command_state_subject(row.org_id, row.entity_id, row.command_id),
            msgspec.json.encode(JournalRecord(row=row, node=self.node_id)),
            headers={"Nats-Expected-Last-Subject-Sequence": str(expect)},
        )
        return int(ack.seq)

    async def _to_edge(self, edge: str, row: CommandRow) -> None:
        """Put the command in the hub's outbox for ``edge`` (the edge sources it when its link is up)."""
        try:
            await self.js.publish(
                topology.edge_outbox_subject(edge, row.org_id, row.entity_id, row.command_id),
                msgspec.json.encode(JournalRecord(row=row, node=self.node_id)),
                headers={"Nats-Expected-Last-Subject-Sequence": "0", "Nats-Msg-Id": row.command_id},
            )
        except APIError as exc:
            if not wrong_last_sequence(exc.err_code):
                raise  # already in the outbox otherwise: nothing to do

    async def last_record(self, row: CommandRow) -> tuple[int, JournalRecord | None]:
        """The journal's last ``(sequence, record)`` of a command; ``(0, None)`` when it has none.

        Read from the stream leader (not a direct get, which a replica may answer from behind).
        """
        subject = topology.command_state_subject(row.org_id, row.entity_id, row.command_id)
        try:
            msg = await self.js.get_last_msg(topology.STREAM_COMMANDS, subject)
        except NotFoundError:
            return 0, None
        try:
            return int(msg.seq or 0), msgspec.json.decode(msg.data or b"", type=JournalRecord)
        except msgspec.DecodeError:
            return int(msg.seq or 0), None

    async def claim(self, row: CommandRow, status: str, detail: str) -> CommandRow | None:
        """Move the command to ``status`` in its journal, compare-and-set; ``None`` if another node did first.

        The journal's last record decides, not this node's copy (which may lag): only a
        step forward from it is written, with its sequence as the expected last one.
        """
        for _ in range(CLAIM_RETRIES):
            seq, last = await self.last_record(row)
            current = last.row if last is not None else row
            if last is not None and not moves_forward(current.status, status):
                self.claims_lost += 1
                return None
            when = utc_iso(self.clock)
            delivered = current.delivered_at or (when if status != "expired" else None)
            new = msgspec.structs.replace(
                current, status=status, detail=detail or current.detail, updated_at=when, delivered_at=delivered
            )
            try:
                await self._journal(new, expect=seq)
            except APIError as exc:
                if wrong_last_sequence(exc.err_code):
                    continue  # someone wrote in between: read again
                raise
            return new
        self.claims_lost += 1
        return None

    async def dispatch(self, row: CommandRow) -> CommandRow | None:
        """Publish a queued command to its entity and mark it delivered (one node only; see ``claim``)."""
        claimed = await self.claim(row, "delivered", "")
        if claimed is None:
            return None
        message = CommandMessage(
            command_id=row.command_id,
            command=row.command,
            params=row.params_dict,
            org_id=row.org_id,
            entity_id=row.entity_id,
            issued_at=row.issued_at,
            expires_at=row.expires_at,
            issued_by=row.issued_by,
        )
        for attempt in range(PUBLISH_RETRIES):
            try:
                await self.js.publish(
                    topology.command_subject(row.org_id, row.entity_id),
                    encode(message),
                    headers={"Nats-Msg-Id": row.command_id},
                )
                break
            except (NatsError, TimeoutError):
                if attempt == PUBLISH_RETRIES - 1:
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))
        updated = await commands_db.advance(self.db, row.command_id, "delivered", "", claimed.updated_at)
        if updated is not None:
            await self._changed(updated)
        return updated or claimed

    async def dispatch_queued(self, entity_id: str) -> int:
        """Publish every queued command of an entity that just came back (not an edge's: the edge delivers)."""
        entity = await registry_db.get_entity(self.db, entity_id)
        if edge_owner(entity):
            return 0
        sent = 0
        for row in await commands_db.queued_for(self.db, entity_id):
            if row.expires_at > utc_iso(self.clock) and await self.dispatch(row) is not None:
                sent += 1
        if sent:
            log.info("delivered %d queued command(s) to %s", sent, entity_id)
        return sent

    async def dispatch_if_live(self, row: CommandRow) -> None:
        """Deliver a command another node (or the hub) queued, if its entity is live here and it is still queued."""
        current = await commands_db.get_command(self.db, row.command_id)
        if current is None or current.status != "queued" or current.expires_at <= utc_iso(self.clock):
            return
        view = self.cache.view(row.entity_id)
        if view is None or not view.is_live:
            return
        if edge_owner(await registry_db.get_entity(self.db, row.entity_id)):
            return
        await self.dispatch(current)

    def check_ack(self, row: CommandRow | None, command_id: str, entity_id: str, org_id: str) -> None:
        """Refuse an ack for an unknown command (``NotFound``) or another entity's (``Invalid``)."""
        if row is None:
            raise NotFound(f"command {command_id} not found")
        if row.org_id != org_id or row.entity_id != entity_id:
            # Same words whatever did not match: the refusal tells nothing about other organisations.
            raise Invalid(f"command {command_id} is not a command of entity {entity_id} in organisation {org_id}")

    async def acknowledge(
        self, command_id: str, entity_id: str, status: str, detail: str, *, org_id: str
    ) -> CommandRow | None:
        """Apply a device ack (``rejected`` counts as ``failed``); None if stale or duplicate.

        ``org_id`` and ``entity_id`` come from the ack's subject, which the device's
        credentials confine to its organisation. The command must be that entity's in
        that organisation: an ack for another organisation's (or entity's) command is
        refused with ``Invalid`` and changes nothing. ``NotFound`` only when no command
        has the id (yet: the ack may overtake the command's bookkeeping on this node).
        """
        row = await commands_db.get_command(self.db, command_id)
        self.check_ack(row, command_id, entity_id, org_id)
        target = "failed" if status == "rejected" else status
        updated = await commands_db.advance(self.db, command_id, target, detail, utc_now())
        if updated is not None:
            await self._changed(updated)
        return updated

    async def apply_record_in(
        self, conn: aiosqlite.Connection, row: CommandRow, *, overrides_expired: bool = False
    ) -> CommandRow | None:
        """Apply a journal record inside a projection's transaction; the row when it changed anything."""
        if await commands_db.get_in(conn, row.command_id) is None:
            return row if await commands_db.insert_in(conn, row) else None
        return await commands_db.advance_in(
            conn, row.command_id, row.status, row.detail, row.updated_at, overrides_expired=overrides_expired
        )

    async def apply_ack_in(
        self,
        conn: aiosqlite.Connection,
        command_id: str,
        entity_id: str,
        org_id: str,
        status: str,
        detail: str,
        when: str,
        *,
        overrides_expired: bool = False,
    ) -> CommandRow | None:
        """Apply a device ack inside a projection's transaction (``None``: unknown, another's, or not forward)."""
        row = await commands_db.get_in(conn, command_id)
        if row is None or row.org_id != org_id or row.entity_id != entity_id:
            return None
        target = "failed" if status == "rejected" else status
        return await commands_db.advance_in(conn, command_id, target, detail, when, overrides_expired=overrides_expired)

    async def record_external(self, message: CommandMessage, when: str | None = None) -> bool:
        """Remember a command someone published straight to NATS (not through us)."""
        now = when or utc_iso(self.clock)
        row = external_row(message, now)
        inserted = await commands_db.insert_command(self.db, row)
        if inserted:
            await self._changed(row)
        return inserted

    async def expire_due(self) -> int:
        """Expire every open command past its TTL (once, across nodes: see ``claim``)."""
        expired = 0
        now = utc_iso(self.clock)
        for row in await commands_db.due_to_expire(self.db, now):
            edge = edge_owner(await registry_db.get_entity(self.db, row.entity_id))
            detail = (
                f"not confirmed by edge {edge} before {row.expires_at}"
                if edge
                else f"no completion before {row.expires_at}"
            )
            claimed = await self.claim(row, "expired", detail)
            if claimed is None:
                continue  # another node expired it, or it moved on: its record reaches us through the projection
            updated = await commands_db.advance(self.db, row.command_id, "expired", detail, claimed.updated_at)
            if updated is not None:
                expired += 1
                await self._changed(updated)
        return expired

    async def list_for(self, org_id: str, entity_id: str, limit: int, offset: int) -> tuple[list[CommandView], int]:
        """Commands of an entity, newest first, with the total count."""
        entity = await registry_db.get_entity(self.db, entity_id)
        if entity is None or entity.org_id != org_id:
            raise NotFound(f"entity {entity_id} not found")
        rows = await commands_db.list_commands(self.db, entity_id, limit, offset)
        return [to_view(r) for r in rows], await commands_db.count_commands(self.db, entity_id)

    async def recent(self, entity_id: str, limit: int) -> list[CommandRow]:
        """The latest commands of an entity as stored (the entity page's list; no organisation check)."""
        return await commands_db.list_commands(self.db, entity_id, limit)

    async def get(self, org_id: str, entity_id: str, command_id: str) -> CommandView:
        """One command of an entity."""
        row = await commands_db.get_command(self.db, command_id)
        if row is None or row.entity_id != entity_id or row.org_id != org_id:
            raise NotFound(f"command {command_id} not found")
        return to_view(row)

    async def changed(self, row: CommandRow, overrides_expired: bool = False) -> None:
        """Announce a changed command and merge it into the entity's ``commands`` scope (after a projection)."""
        await self._changed(row, overrides_expired)

    async def _changed(self, row: CommandRow, overrides_expired: bool = False) -> None:
        self.hub.publish(Update(Topic.COMMANDS, row.entity_id, row.command_id))
        entry = {
            "command_id": row.command_id,
            "command": row.command,
            "status": row.status,
            "updated_at": row.updated_at,
            "issued_at": row.issued_at,
            "detail": row.detail,
        }

        def mutate(doc: dict[str, Any]) -> bool:
            scope = doc.get("commands")
            recent = merge_recent(
                scope.get("recent") if isinstance(scope, dict) else None,
                entry,
                RECENT_IN_STATE,
                overrides_expired,
            )
            if recent is None:
                return False  # what the scope holds is as new or newer: leave it
            doc["commands"] = {"timestamp": utc_now(), "recent": recent}
            return True

        try:
            await self.store.merge(row.entity_id, mutate, create=False)
        except Exception:
            log.exception("mirroring commands of %s into state failed", row.entity_id)


def external_row(message: CommandMessage, now: str) -> CommandRow:
    """The row of a command someone published straight to NATS, stamped ``now`` (a stream time)."""
    return CommandRow(
        command_id=message.command_id,
        org_id=message.org_id,
        entity_id=message.entity_id,
        command=message.command,
        params=msgspec.json.encode(message.params).decode(),
        status="delivered",
        detail="published directly to NATS",
        issued_by=message.issued_by or "nats",
        issued_at=message.issued_at,
        updated_at=now,
        expires_at=message.expires_at,
        delivered_at=now,
    )


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")
