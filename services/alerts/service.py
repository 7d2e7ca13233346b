"""The rule service: audited rule changes, snooze and acknowledgement, firings and resolutions.

A firing is three things at once: a ``rule_events`` row (history with value vs
threshold), an alert of kind ``rule`` (so the alerts page and the navigation badge
count it) and a toast on every open page of a user who may see it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING
from urllib.parse import quote

import msgspec

from core.contracts.common import new_id, utc_now
from core.errors import Invalid, NotFound
from db import rules as rules_db
from db.database import Database
from db.rules import RuleEventRow, RuleRow
from services.alerts.model import RuleSpec, describe
from services.alerts.store import AlertService
from services.audit import Actor, AuditService, diff
from services.hub import Hub, Update

if TYPE_CHECKING:
    from app.runtime import Runtime

RULES_TOPIC = "rules"  # key "rule:<id>" = definition changed, "event:<id>" = firing/resolution
TOAST_TOPIC = "toasts"
MAX_SNOOZE_MINUTES = 7 * 24 * 60


class Toast(msgspec.Struct, frozen=True, kw_only=True):
    """Template context of ``partials/toast.html`` (also used to decide who gets it)."""

    event_id: str
    title: str
    text: str
    severity: str
    org_id: str
    href: str


def alert_id_of(rule_id: str, subject: str) -> str:
    """The alert that stands for one rule firing on one subject."""
    return f"rule:{rule_id}:{subject}"


def _public(row: RuleRow) -> dict[str, object]:
    return {k: v for k, v in msgspec.structs.asdict(row).items() if k not in ("created_at", "updated_at")}


class RuleService:
    """Rules, their events, and the alerts and toasts they raise."""

    def __init__(self, db: Database, hub: Hub, audit: AuditService, alerts: AlertService) -> None:
        self.db = db
        self.hub = hub
        self.audit = audit
        self.alerts = alerts

    @classmethod
    def of(cls, runtime: Runtime) -> RuleService:
        """The service over a started runtime's database, hub, audit log and alerts."""
        services = runtime.services
        return cls(runtime.db, runtime.hub, services.audit, services.alerts)

    async def get(self, rule_id: str) -> RuleRow:
        """One rule, or 404."""
        row = await rules_db.get_rule(self.db, rule_id)
        if row is None:
            raise NotFound(f"rule {rule_id} not found")
        return row

    async def create(self, actor: Actor, spec: RuleSpec) -> RuleRow:
        """Add a rule (audited as ``rule.create``)."""
        now = utc_now()
        row = RuleRow(
            rule_id=new_id(),
            **msgspec.structs.asdict(spec),
            snoozed_until=None,
            snoozed_by=None,
            created_by=actor.label,
            created_at=now,
            updated_at=now,
        )
        await rules_db.save_rule(self.db, row)
        await self.audit.record(
            actor,
            "rule.create",
            target=row.rule_id,
            org_id=row.org_id,
            detail=row.name,
            changes=diff(None, _public(row)),
        )
        self._changed(row.rule_id)
        return row

    async def update(self, actor: Actor, rule_id: str, spec: RuleSpec) -> RuleRow:
        """Replace a rule's definition (audited as ``rule.update`` with the diff)."""
        before = await self.get(rule_id)
        row = msgspec.structs.replace(before, **msgspec.structs.asdict(spec), updated_at=utc_now())
        await rules_db.save_rule(self.db, row)
        await self.audit.record(
            actor, "rule.update", target=rule_id, org_id=row.org_id, changes=diff(_public(before), _public(row))
        )
        self._changed(rule_id)
        return row

    async def delete(self, actor: Actor, rule_id: str) -> None:
        """Remove a rule; its open firings resolve on the evaluator's next tick (audited)."""
        before = await self.get(rule_id)
        await rules_db.delete_rule(self.db, rule_id)
        await self.audit.record(
            actor,
            "rule.delete",
            target=rule_id,
            org_id=before.org_id,
            detail=before.name,
            changes=diff(_public(before), None),
        )
        self._changed(rule_id)

    async def snooze(self, actor: Actor, rule_id: str, minutes: float) -> RuleRow:
        """Silence new firings for ``minutes`` (0 ends a snooze); audited as ``rule.snooze``."""
        if not 0 <= minutes <= MAX_SNOOZE_MINUTES:
            raise Invalid(f"minutes: 0 to {MAX_SNOOZE_MINUTES}")
        before = await self.get(rule_id)
        until = time.time() + minutes * 60 if minutes else None
        row = msgspec.structs.replace(
            before, snoozed_until=until, snoozed_by=actor.label if until else None, updated_at=utc_now()
        )
        await rules_db.save_rule(self.db, row)
        await self.audit.record(
            actor,
            "rule.snooze",
            target=rule_id,
            org_id=row.org_id,
            detail=f"{minutes:g} minutes" if minutes else "ended",
        )
        self._changed(rule_id)
        return row

    async def acknowledge(self, actor: Actor, event: RuleEventRow) -> RuleEventRow:
        """Acknowledge a firing and its alert (idempotent; audited as ``rule.acknowledge``)."""
        if event.acknowledged_at:
            return event
        now = utc_now()
        await rules_db.acknowledge_events(self.db, event.alert_id, actor.label, now)
        try:
            await self.alerts.acknowledge(event.alert_id, actor.label)
        except NotFound:
            pass  # the alert was pruned; the event keeps the acknowledgement
        await self.audit.record(
            actor, "rule.acknowledge", target=event.event_id, org_id=event.org_id, detail=event.alert_id
        )
        self.hub.publish(Update(RULES_TOPIC, f"event:{event.event_id}"))
        return msgspec.structs.replace(event, acknowledged_by=actor.label, acknowledged_at=now)

    async def fire(
        self, rule: RuleRow, subject: str, value: float, *, org_id: str = "", entity_id: str = "", name: str = ""
    ) -> RuleEventRow:
        """Record a firing, raise its alert and toast it."""
        alert_id = alert_id_of(rule.rule_id, subject)
        event = RuleEventRow(
            event_id=new_id(),
            rule_id=rule.rule_id,
            rule_name=rule.name,
            kind=rule.kind,
            subject=subject,
            org_id=org_id,
            entity_id=entity_id,
            severity=rule.severity,
            value=value,
            threshold=rule.threshold,
            alert_id=alert_id,
            fired_at=utc_now(),
            resolved_at=None,
            resolved_value=None,
            acknowledged_by=None,
            acknowledged_at=None,
        )
        await rules_db.insert_event(self.db, event)
        where = name or subject
        reason = f"{describe(rule.kind, rule.threshold)}: value {value:g}"
        await self.alerts.raise_alert(
            alert_id,
            kind="rule",
            severity=rule.severity,
            org_id=org_id,
            entity_id=entity_id,
            title=f"{rule.name}: {where}",
            reason=reason,
            data={"rule_id": rule.rule_id, "event_id": event.event_id, "value": value, "threshold": rule.threshold},
        )
        self.hub.publish(Update(RULES_TOPIC, f"event:{event.event_id}"))
        toast = Toast(
            event_id=event.event_id,
            title=f"{rule.name}: {where}",
            text=reason,
            severity=rule.severity,
            org_id=org_id,
            href=f"/entities/{quote(entity_id, safe='')}" if entity_id else "/alerts/rules",
        )
        self.hub.publish(Update(TOAST_TOPIC, event.event_id, toast))
        return event

    async def resolve(self, rule_id: str, subject: str, value: float | None) -> RuleEventRow | None:
        """Close the open firing of ``rule_id`` on ``subject`` and clear its alert."""
        alert_id = alert_id_of(rule_id, subject)
        event = await rules_db.resolve_event(self.db, alert_id, value, utc_now())
        why = "condition cleared" if value is None else f"condition cleared: value {value:g}"
        await self.alerts.clear(alert_id, why)
        if event is not None:
            self.hub.publish(Update(RULES_TOPIC, f"event:{event.event_id}"))
        return event

    def _changed(self, rule_id: str) -> None:
        self.hub.publish(Update(RULES_TOPIC, f"rule:{rule_id}"))
