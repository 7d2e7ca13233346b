"""The rule service: audited rule changes, snooze and acknowledgement, firings and resolutions.

A firing is three things at once: a ``rule_events`` row (history with value vs
threshold), an alert (so the alerts page and the navigation badge count it) and, for the
rules admins add, a toast on every open page of a user who may see it. A rule an admin
adds raises an alert of kind ``rule``; a default rule (``services.alerts.defaults``) the
built-in alert it stands for. Acknowledging goes through ``AlertService.acknowledge``.
"""

from __future__ import annotations

import time
from urllib.parse import quote

import msgspec

from core.contracts.common import new_id, utc_now
from core.errors import Invalid, NotFound
from core.topics import Topic
from db import rules as rules_db
from db.alerts import AlertRow
from db.database import Database
from db.rules import RuleEventRow, RuleRow
from services.alerts import defaults
from services.alerts.defaults import DEFAULT_RULE_IDS, alert_id_of
from services.alerts.model import RuleSpec, describe
from services.alerts.sources import Reading
from services.alerts.store import SEVERITY_RANK, AlertService
from services.audit import Actor, AuditService, diff
from services.hub import Hub, Update

__all__ = ["RuleService", "Toast", "alert_id_of"]

MAX_SNOOZE_MINUTES = 7 * 24 * 60


class Toast(msgspec.Struct, frozen=True, kw_only=True):
    """Template context of ``partials/toast.html`` (also used to decide who gets it)."""

    event_id: str
    title: str
    text: str
    severity: str
    org_id: str
    href: str


def _public(row: RuleRow) -> dict[str, object]:
    return {k: v for k, v in msgspec.structs.asdict(row).items() if k not in ("created_at", "updated_at")}


class RuleService:
    """Rules, their events, and the alerts and toasts they raise."""

    def __init__(
        self,
        db: Database,
        hub: Hub,
        audit: AuditService,
        alerts: AlertService,
        *,
        offline_after: float = 10.0,
        battery_percent: float = 20.0,
    ) -> None:
        self.db = db
        self.hub = hub
        self.audit = audit
        self.alerts = alerts
        # The thresholds the settings give the default rules (until an admin edits them).
        self.default_thresholds = {"offline": offline_after, "battery": battery_percent}

    async def list_rules(self) -> list[RuleRow]:
        """Every rule, default rules included, by name."""
        return await rules_db.list_rules(self.db)

    async def find(self, rule_id: str) -> RuleRow | None:
        """One rule, or ``None``."""
        return await rules_db.get_rule(self.db, rule_id)

    async def get_event(self, event_id: str) -> RuleEventRow | None:
        """One firing, or ``None``."""
        return await rules_db.get_event(self.db, event_id)

    async def open_events(self) -> list[RuleEventRow]:
        """Firings not yet resolved."""
        return await rules_db.open_events(self.db)

    async def firing_counts(self) -> dict[str, int]:
        """``{rule_id: open firings}`` of the rules that are firing."""
        return await rules_db.firing_counts(self.db)

    async def recent_events(self, org_ids: list[str] | None, limit: int = 50) -> list[RuleEventRow]:
        """The latest firings of ``org_ids`` (every organisation when None)."""
        return await rules_db.list_events(self.db, org_ids=org_ids, limit=limit)

    async def alerts_without_firing(self, builtin: str) -> list[AlertRow]:
        """Active alerts of a built-in kind with no open firing behind them (raised before default rules).

        Threat alerts the event projection raised from detection events are not among them:
        a ``lost`` event clears those, not the state's tracks (every node projects the same events).
        """
        open_ids = {e.alert_id for e in await rules_db.open_events(self.db)}
        rows, _total = await self.alerts.page(org_ids=None, status="active", kind=builtin, limit=100_000)
        return [
            r
            for r in rows
            if r.alert_id.startswith(f"{builtin}:") and r.alert_id not in open_ids and not _from_detection(r.data)
        ]

    async def sync_defaults(self) -> None:
        """Give the default rules nobody has edited the thresholds the settings say (idempotent)."""
        for builtin, threshold in self.default_thresholds.items():
            row = await rules_db.get_rule(self.db, DEFAULT_RULE_IDS[builtin])
            if row is not None and defaults.untouched(row) and row.threshold != threshold:
                await rules_db.save_rule(self.db, msgspec.structs.replace(row, threshold=threshold))
                self._changed(row.rule_id)

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
        if before.builtin and spec.kind != before.kind:
            raise Invalid(f"kind: the default {before.builtin} rule keeps its kind")
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
        if before.builtin:
            raise Invalid(f"the default {before.builtin} rule cannot be deleted: disable it instead")
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
        await self.alerts.acknowledge(actor, event.alert_id, org_id=event.org_id, event_id=event.event_id)
        return await rules_db.get_event(self.db, event.event_id) or event

    async def fire(
        self, rule: RuleRow, reading: Reading, *, org_id: str = "", entity_id: str = "", name: str = ""
    ) -> RuleEventRow:
        """Record a firing and raise its alert (and toast it, unless it is a default rule's)."""
        assert reading.value is not None
        value, subject = reading.value, reading.subject
        alert_id = alert_id_of(rule.rule_id, subject, rule.builtin)
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
        if rule.builtin:
            spec = defaults.alert_of(rule, reading, entity_id, name or entity_id)
            event = msgspec.structs.replace(event, severity=spec.severity)
            current = await self.alerts.find(alert_id)
            if (
                current is not None
                and current.status == "active"
                and current.acknowledged_at
                and current.org_id in ("", org_id)
                and SEVERITY_RANK[spec.severity] <= SEVERITY_RANK.get(current.severity, 0)
            ):
                # Still active and acknowledged (raised before this firing, not escalated by it):
                # the history says so too.
                event = msgspec.structs.replace(
                    event, acknowledged_by=current.acknowledged_by, acknowledged_at=current.acknowledged_at
                )
            await rules_db.insert_event(self.db, event)
            await self.show(spec, org_id=org_id, entity_id=entity_id)
            self.hub.publish(Update(Topic.RULES, f"event:{event.event_id}"))
            return event
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
        self.hub.publish(Update(Topic.RULES, f"event:{event.event_id}"))
        toast = Toast(
            event_id=event.event_id,
            title=f"{rule.name}: {where}",
            text=reason,
            severity=rule.severity,
            org_id=org_id,
            href=f"/entities/{quote(entity_id, safe='')}" if entity_id else "/alerts/rules",
        )
        self.hub.publish(Update(Topic.TOASTS, event.event_id, toast))
        return event

    async def show(self, spec: defaults.AlertSpec, *, org_id: str, entity_id: str) -> bool:
        """Raise, escalate or update a default rule's alert (True when it changed)."""
        return await self.alerts.raise_alert(
            spec.alert_id,
            kind=spec.kind,
            severity=spec.severity,
            org_id=org_id,
            entity_id=entity_id,
            track_id=spec.track_id,
            title=spec.title,
            reason=spec.reason,
            data=spec.data,
        )

    async def resolve(
        self, rule_id: str, subject: str, value: float | None, *, builtin: str = "", why: str = ""
    ) -> RuleEventRow | None:
        """Close the open firing of ``rule_id`` on ``subject`` and clear its alert."""
        alert_id = alert_id_of(rule_id, subject, builtin)
        event = await rules_db.resolve_event(self.db, alert_id, value, utc_now())
        if not why:
            if builtin:
                why = defaults.cleared_reason(builtin, value)
            else:
                why = "condition cleared" if value is None else f"condition cleared: value {value:g}"
        await self.alerts.clear(alert_id, why)
        if event is not None:
            self.hub.publish(Update(Topic.RULES, f"event:{event.event_id}"))
        return event

    def _changed(self, rule_id: str) -> None:
        self.hub.publish(Update(Topic.RULES, f"rule:{rule_id}"))


def _from_detection(data: str) -> bool:
    """Whether an alert's data says the event projection raised it from a detection event."""
    try:
        doc = msgspec.json.decode(data or "{}")
    except msgspec.DecodeError:
        return False
    return isinstance(doc, dict) and doc.get("source") == "detection"
