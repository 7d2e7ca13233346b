"""The alert service: raise, escalate, clear and acknowledge alerts; notify live pages."""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from core.contracts.common import utc_now
from core.errors import NotFound
from db import alerts as alerts_db
from db.alerts import AlertRow
from db.database import Database
from services.hub import Hub, Update
from services.registry import entity_in

log = logging.getLogger(__name__)

ALERTS_TOPIC = "alerts"
SEVERITY_RANK = {"info": 0, "warning": 1, "elevated": 2, "high": 3, "critical": 4}


class AlertService:
    """Alert lifecycle: active (raised/escalated) → cleared; acknowledgement is separate."""

    def __init__(self, db: Database, hub: Hub) -> None:
        self.db = db
        self.hub = hub

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
    ) -> bool:
        """Create or re-activate an alert, or escalate it when the severity rises.

        Returns True when something changed (so callers can log or notify).
        Escalation and re-activation clear a previous acknowledgement.
        """
        now = utc_now()
        current = await alerts_db.get_alert(self.db, alert_id)
        if current is not None and org_id and current.org_id and current.org_id != org_id:
            # Alert ids name an entity, and an entity id can be deleted in one organisation and
            # re-created in another: the first organisation keeps its row (archived under an id
            # that names it), the new one starts afresh, neither ever touches the other's.
            archived = f"{alert_id}~{current.org_id}"
            await alerts_db.archive_alert(self.db, alert_id, archived, now)
            self.hub.publish(Update(ALERTS_TOPIC, archived, await alerts_db.get_alert(self.db, archived)))
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
        self.hub.publish(Update(ALERTS_TOPIC, alert_id, row))
        return True

    async def clear(self, alert_id: str, reason: str = "") -> bool:
        """Mark an active alert cleared; False if it was not active."""
        current = await alerts_db.get_alert(self.db, alert_id)
        if current is None or current.status != "active":
            return False
        now = utc_now()
        row = msgspec.structs.replace(
            current, status="cleared", cleared_at=now, updated_at=now, reason=reason or current.reason
        )
        await alerts_db.save_alert(self.db, row)
        self.hub.publish(Update(ALERTS_TOPIC, alert_id, row))
        return True

    async def acknowledge(self, alert_id: str, user: str, org_ids: list[str] | None = None) -> AlertRow:
        """Acknowledge an alert (idempotent); 404 if unknown or not visible."""
        current = await alerts_db.get_alert(self.db, alert_id)
        if current is None or (org_ids is not None and current.org_id not in org_ids):
            raise NotFound(f"alert {alert_id} not found")
        if current.acknowledged_at:
            return current
        row = msgspec.structs.replace(current, acknowledged_by=user, acknowledged_at=utc_now())
        await alerts_db.save_alert(self.db, row)
        self.hub.publish(Update(ALERTS_TOPIC, alert_id, row))
        return row

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
