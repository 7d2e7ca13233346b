"""The alert store: raise, escalate, clear, list and acknowledge alerts; notify live pages.

Every alert goes through here, whoever raises it: the rules engine (its default rules —
offline, battery, threat — and the rules admins add), detection events and device alert
events. ``acknowledge`` is the one acknowledge path: the alerts page, the REST API and the
rule history all call it, and it marks the alert row, the rule firings behind it and the
audit log together.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from core.contracts.common import utc_now
from core.errors import NotFound
from core.topics import Topic
from db import alerts as alerts_db
from db import rules as rules_db
from db.alerts import AlertRow
from db.database import Database
from services.audit import Actor, AuditService
from services.hub import Hub, Update
from services.registry import entity_in

log = logging.getLogger(__name__)

SEVERITY_RANK = {"info": 0, "warning": 1, "elevated": 2, "high": 3, "critical": 4}


class AlertService:
    """Alert lifecycle: active (raised/escalated) → cleared; acknowledgement is separate."""

    def __init__(self, db: Database, hub: Hub, audit: AuditService) -> None:
        self.db = db
        self.hub = hub
        self.audit = audit

    async def find(self, alert_id: str) -> AlertRow | None:
        """One alert, or ``None``."""
        return await alerts_db.get_alert(self.db, alert_id)

    async def get(self, alert_id: str) -> AlertRow:
        """One alert, or 404."""
        row = await self.find(alert_id)
        if row is None:
            raise NotFound(f"alert {alert_id} not found")
        return row

    async def page(
        self,
        *,
        org_ids: list[str] | None,
        status: str | None = None,
        kind: str | None = None,
        unacknowledged: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[AlertRow], int]:
        """Alerts of ``org_ids`` (every organisation when None), newest first, and how many match."""
        filters: dict[str, Any] = {"status": status, "kind": kind, "org_ids": org_ids, "unacknowledged": unacknowledged}
        rows = await alerts_db.list_alerts(self.db, limit=limit, offset=offset, **filters)
        return rows, await alerts_db.count_alerts(self.db, **filters)

    async def raise_alert(
        self,
        alert_id: str,
        *,
        kind: str,
        severity: str,
        title: str,
        reason: str,
        org_id: str = "",
        entity_id: str = "",
        track_id: str = "",
        data: dict[str, Any] | None = None,
        at: str | None = None,
    ) -> bool:
        """Create or re-activate an alert, or escalate it when the severity rises.

        Returns True when something changed (so callers can log or notify).
        Escalation and re-activation clear a previous acknowledgement. ``at`` stamps the
        change with a time every node agrees on (a stream message's), instead of now.
        """
        now = at or utc_now()
        current = await alerts_db.get_alert(self.db, alert_id)
        if current is not None and org_id and current.org_id and current.org_id != org_id:
            # Alert ids name an entity, and an entity id can be deleted in one organisation and
            # re-created in another: the first organisation keeps its row (archived under an id
            # that names it), the new one starts afresh, neither ever touches the other's.
            archived = f"{alert_id}~{current.org_id}"
            await alerts_db.archive_alert(self.db, alert_id, archived, now)
            self.hub.publish(Update(Topic.ALERTS, archived, await alerts_db.get_alert(self.db, archived)))
            current = None
        encoded = msgspec.json.encode(data or {}).decode()
        if current is not None and current.status == "active":
            rising = SEVERITY_RANK[severity] > SEVERITY_RANK.get(current.severity, 0)
            if not rising and current.reason == reason and current.title == title:
                return False
            row = msgspec.structs.replace(
                current,
                severity=severity if rising else current.severity,
                title=title,
                reason=reason,
                updated_at=now,
                data=encoded,
                acknowledged_by=None if rising else current.acknowledged_by,
                acknowledged_at=None if rising else current.acknowledged_at,
            )
        else:
            row = AlertRow(
                alert_id=alert_id,
                kind=kind,
                severity=severity,
                org_id=org_id,
                entity_id=entity_id,
                track_id=track_id,
                title=title,
                reason=reason,
                status="active",
                acknowledged_by=None,
                acknowledged_at=None,
                created_at=now,
                updated_at=now,
                cleared_at=None,
                data=encoded,
            )
        await alerts_db.save_alert(self.db, row)
        self.hub.publish(Update(Topic.ALERTS, alert_id, row))
        return True

    async def clear(self, alert_id: str, reason: str = "", at: str | None = None) -> bool:
        """Mark an active alert cleared; False if it was not active (``at`` as for ``raise_alert``)."""
        current = await alerts_db.get_alert(self.db, alert_id)
        if current is None or current.status != "active":
            return False
        now = at or utc_now()
        row = msgspec.structs.replace(
            current, status="cleared", cleared_at=now, updated_at=now, reason=reason or current.reason
        )
        await alerts_db.save_alert(self.db, row)
        self.hub.publish(Update(Topic.ALERTS, alert_id, row))
        return True

    async def acknowledge(
        self, actor: Actor, alert_id: str, *, org_id: str | None = None, event_id: str = ""
    ) -> AlertRow | None:
        """Acknowledge an alert and every rule firing behind it, audited once (idempotent).

        The one acknowledge path. The caller has checked that ``actor`` may acknowledge in the
        alert's organisation. ``event_id`` names the firing acknowledged from the rule history
        (audited as ``rule.acknowledge``; otherwise ``alert.acknowledge``); ``org_id`` is then
        the firing's organisation. Returns the alert (``None``: pruned, only its firings are
        left); 404 when neither the alert nor a firing behind it exists.
        """
        current = await alerts_db.get_alert(self.db, alert_id)
        if current is not None and org_id is not None and current.org_id != org_id:
            current = None  # another organisation's alert under a re-used entity id: not this one
        if current is None and org_id is None:
            raise NotFound(f"alert {alert_id} not found")
        now = utc_now()
        owner = current.org_id if current is not None else org_id or ""
        marked = await rules_db.acknowledge_events(self.db, alert_id, owner, actor.label, now)
        changed = marked > 0
        if current is not None and not current.acknowledged_at:
            current = msgspec.structs.replace(current, acknowledged_by=actor.label, acknowledged_at=now)
            await alerts_db.save_alert(self.db, current)
            self.hub.publish(Update(Topic.ALERTS, alert_id, current))
            changed = True
        if marked:
            self.hub.publish(Update(Topic.RULES, f"ack:{alert_id}"))
        if changed:
            if event_id:
                await self.audit.record(actor, "rule.acknowledge", target=event_id, org_id=owner, detail=alert_id)
            else:
                await self.audit.record(actor, "alert.acknowledge", target=alert_id, org_id=owner)
        return current

    async def of_entity(
        self, org_id: str | None, entity_id: str, status: str | None = None, limit: int = 100, offset: int = 0
    ) -> tuple[list[AlertRow], int]:
        """A page of one entity's alerts, newest first, and their total.

        With ``org_id``, ``NotFound`` unless the entity is registered in that organisation.
        """
        if org_id is not None:
            await entity_in(self.db, org_id, entity_id)
        rows = await alerts_db.list_alerts(self.db, status=status, entity_id=entity_id, limit=limit, offset=offset)
        return rows, await alerts_db.count_alerts(self.db, status=status, entity_id=entity_id)
