"""The command service: send commands to entities and follow them to completion.

``send`` stores the command as ``queued``; if the entity is live it is published at
once on ``constellation.commands.{org}.{entity}`` (``Nats-Msg-Id`` = command id, so
retries and several nodes never deliver it twice) and becomes ``delivered``. Queued
commands are published when the entity comes back, and expire after their TTL. Acks
from the device move the command forward (``workers/commands.py``). Every change is
mirrored into the entity's ``commands`` scope in KV and announced on the hub.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from nats.js import JetStreamContext

from core import topology
from core.clock import SYSTEM_CLOCK, Clock, utc_iso
from core.contracts.commands import CommandMessage, check_params
from core.contracts.common import DecodeError, encode, new_id, utc_now
from core.errors import AppError, Invalid, NotFound
from core.structs import as_view
from core.topics import Topic
from db import commands as commands_db
from db import registry as registry_db
from db.commands import CommandRow
from db.database import Database
from fabric.state_store import StateStore
from services.audit import SYSTEM_ACTOR, Actor, AuditService
from services.auth.principal import Principal
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
    ) -> None:
        self.clock = clock
        self.db = db
        self.js = js
        self.store = store
        self.cache = cache
        self.hub = hub
        self.default_ttl = default_ttl
        self.audit = audit

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
        row = CommandRow(
            command_id=new_id(),
            org_id=org_id,
            entity_id=entity_id,
            command=body.command,
            params=msgspec.json.encode(body.params).decode(),
            status="queued",
            detail="",
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
        view = self.cache.view(entity_id)
        if view is not None and view.is_live:
            row = await self.dispatch(row) or row
        else:
            await self._changed(row)
        return to_view(row)

    async def dispatch(self, row: CommandRow) -> CommandRow | None:
        """Publish a queued command to its entity and mark it delivered."""
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
        await self.js.publish(
            topology.command_subject(row.org_id, row.entity_id),
            encode(message),
            headers={"Nats-Msg-Id": row.command_id},
        )
        updated = await commands_db.advance(self.db, row.command_id, "delivered", "", utc_now())
        if updated is not None:
            await self._changed(updated)
        return updated

    async def dispatch_queued(self, entity_id: str) -> int:
        """Publish every queued command of an entity that just came back."""
        sent = 0
        for row in await commands_db.queued_for(self.db, entity_id):
            if row.expires_at > utc_iso(self.clock) and await self.dispatch(row) is not None:
                sent += 1
        if sent:
            log.info("delivered %d queued command(s) to %s", sent, entity_id)
        return sent

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
        if row is None:
            raise NotFound(f"command {command_id} not found")
        if row.org_id != org_id or row.entity_id != entity_id:
            # Same words whatever did not match: the refusal tells nothing about other organisations.
            raise Invalid(f"command {command_id} is not a command of entity {entity_id} in organisation {org_id}")
        target = "failed" if status == "rejected" else status
        updated = await commands_db.advance(self.db, command_id, target, detail, utc_now())
        if updated is not None:
            await self._changed(updated)
        return updated

    async def record_external(self, message: CommandMessage) -> bool:
        """Remember a command someone published straight to NATS (not through us)."""
        now = utc_now()
        row = CommandRow(
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
        inserted = await commands_db.insert_command(self.db, row)
        if inserted:
            await self._changed(row)
        return inserted

    async def expire_due(self) -> int:
        """Expire every open command past its TTL."""
        expired = 0
        now = utc_iso(self.clock)
        for row in await commands_db.due_to_expire(self.db, now):
            updated = await commands_db.advance(
                self.db, row.command_id, "expired", f"no completion before {row.expires_at}", now
            )
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

    async def _changed(self, row: CommandRow) -> None:
        self.hub.publish(Update(Topic.COMMANDS, row.entity_id, row.command_id))
        recent = await commands_db.list_commands(self.db, row.entity_id, RECENT_IN_STATE)
        scope: dict[str, Any] = {
            "timestamp": utc_now(),
            "recent": [
                {
                    "command_id": r.command_id,
                    "command": r.command,
                    "status": r.status,
                    "updated_at": r.updated_at,
                    "detail": r.detail,
                }
                for r in recent
            ],
        }

        def mutate(doc: dict[str, Any]) -> bool:
            doc["commands"] = scope
            return True

        try:
            await self.store.merge(row.entity_id, mutate, create=False)
        except Exception:
            log.exception("mirroring commands of %s into state failed", row.entity_id)


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")
