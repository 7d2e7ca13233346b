"""StateAlerts: turns what every node sees in the state cache into alerts and status events.

Because each node's state cache sees every entity (telemetry itself is shared out
between nodes by the durable consumer), alerts derived here are the same on every
node: offline/online transitions (plus a ``status`` lifecycle event, deduplicated
across nodes by the KV revision), battery thresholds, and threat alerts that the
detection worker keeps in ``c4isr.threat_intelligence.threat_alerts``.

Every alert is raised in the organisation the registry places the entity in (the
state cache withholds a view whose value names another one), never one a value names.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from core import topology
from core.contracts.common import encode, new_id, utc_now
from core.contracts.events import EntityLifecycleEvent, LifecycleData
from core.contracts.state import threat_word
from db import alerts as alerts_db
from services.alerts.store import AlertService
from services.hub import Update
from services.state_cache import STATE_TOPIC, StateCache
from workers.base import Worker, WorkerContext

log = logging.getLogger("overwatch.workers.state_alerts")

THREAT_SEVERITY = {"HIGH_THREAT": "high", "MODERATE_THREAT": "elevated"}  # by the seeds' (normalised) level


def _battery(view: dict[str, Any]) -> float | None:
    value = (view.get("power") or {}).get("battery_remaining")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _threat_alerts(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    intel = (view.get("c4isr") or {}).get("threat_intelligence") or {}
    alerts = intel.get("threat_alerts") or []
    out: dict[str, dict[str, Any]] = {}
    for alert in alerts if isinstance(alerts, list) else []:
        level = threat_word(alert.get("alert_type")) if isinstance(alert, dict) else None
        if isinstance(alert, dict) and isinstance(alert.get("track_id"), str) and level in THREAT_SEVERITY:
            out[alert["track_id"]] = {**alert, "alert_type": level}  # an upstream client's word read as the seeds'
    return out


class StateAlerts(Worker):
    """Derives alerts and status events from state changes (one per node)."""

    name = "state-alerts"

    def __init__(self, ctx: WorkerContext, state_cache: StateCache, alerts: AlertService) -> None:
        super().__init__(ctx)
        self.state_cache = state_cache
        self.alerts = alerts
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.queued: set[str] = set()
        self.live: dict[str, bool] = {}
        self.low_battery: set[str] = set()
        self.threats: dict[str, set[str]] = {}
        ctx.hub.add_listener(self._on_update)

    def _on_update(self, update: Update) -> None:
        if update.topic == STATE_TOPIC and update.key not in self.queued:
            self.queued.add(update.key)
            self.queue.put_nowait(update.key)

    async def run(self) -> None:
        """Process changed entities until stopped."""
        await self._load_active()
        while not self.stopping.is_set():
            try:
                entity_id = await asyncio.wait_for(self.queue.get(), 1.0)
            except TimeoutError:
                continue
            self.queued.discard(entity_id)
            view = self.state_cache.get(entity_id)
            try:
                await self.evaluate(entity_id, view)
                self.stats.processed += 1
            except Exception as exc:
                self.stats.failed += 1
                self.stats.last_error = str(exc)
                log.exception("alert evaluation failed for %s", entity_id)

    async def _load_active(self) -> None:
        for row in await alerts_db.list_alerts(self.ctx.db, status="active", limit=100_000):
            if row.kind == "battery":
                self.low_battery.add(row.entity_id)
            elif row.kind == "threat":
                self.threats.setdefault(row.entity_id, set()).add(row.track_id)

    async def evaluate(self, entity_id: str, view: dict[str, Any] | None) -> None:
        """Compare the entity's current view with what was alerted before."""
        alerts = self.alerts
        org_id = self.state_cache.org_of(entity_id)
        if view is None or org_id is None:  # deleted, unregistered or withheld: clear what it had
            withheld = self.state_cache.withheld.get(entity_id)
            why = f"state not shown ({withheld})" if withheld else "entity removed"
            self.live.pop(entity_id, None)
            for track in self.threats.pop(entity_id, set()):
                await alerts.clear(f"threat:{entity_id}:{track}", why)
            await alerts.clear(f"offline:{entity_id}", why)
            return
        name = view.get("name") or entity_id
        live = bool(view.get("is_live"))
        before = self.live.get(entity_id)
        self.live[entity_id] = live
        if before is not None and before != live:
            revision = self.state_cache.revisions.get(entity_id, 0)
            await self._status_event(entity_id, org_id, view, revision)
            if live:
                await alerts.clear(f"offline:{entity_id}", "telemetry resumed")
            else:
                await alerts.raise_alert(
                    f"offline:{entity_id}",
                    kind="offline",
                    severity="warning",
                    org_id=org_id,
                    entity_id=entity_id,
                    title=f"{name} offline",
                    reason=f"no telemetry for more than {self.ctx.settings.offline_after:.0f}s",
                )
        await self._battery(entity_id, org_id, name, view)
        await self._threats(entity_id, org_id, name, view)

    async def _battery(self, entity_id: str, org_id: str, name: str, view: dict[str, Any]) -> None:
        level = _battery(view)
        if level is None:
            return
        threshold = self.ctx.settings.battery_alert_percent
        alerts = self.alerts
        if level < threshold:
            self.low_battery.add(entity_id)
            await alerts.raise_alert(
                f"battery:{entity_id}",
                kind="battery",
                severity="high" if level < threshold / 2 else "warning",
                org_id=org_id,
                entity_id=entity_id,
                title=f"Battery low on {name}",
                reason=f"battery below {threshold:.0f}%"
                if level >= threshold / 2
                else f"battery below {threshold / 2:.0f}%",
            )
        elif level >= threshold + 5 and entity_id in self.low_battery:
            self.low_battery.discard(entity_id)
            await alerts.clear(f"battery:{entity_id}", f"battery recovered to {level:.0f}%")

    async def _threats(self, entity_id: str, org_id: str, name: str, view: dict[str, Any]) -> None:
        current = _threat_alerts(view)
        before = self.threats.get(entity_id, set())
        alerts = self.alerts
        for track, alert in current.items():
            label = alert.get("label") or "object"
            await alerts.raise_alert(
                f"threat:{entity_id}:{track}",
                kind="threat",
                severity=THREAT_SEVERITY[alert["alert_type"]],
                org_id=org_id,
                entity_id=entity_id,
                track_id=track,
                title=f"{alert['alert_type'].replace('_', ' ').title()}: {label} at {name}",
                reason=str(alert.get("reason") or ""),
                data={"label": label, "confidence": alert.get("confidence")},
            )
        for track in before - set(current):
            await alerts.clear(f"threat:{entity_id}:{track}", "object no longer tracked")
        self.threats[entity_id] = set(current)

    async def _status_event(self, entity_id: str, org_id: str, view: dict[str, Any], revision: int) -> None:
        if not topology.TOKEN_RE.match(org_id):
            return
        event = EntityLifecycleEvent(
            id=new_id(),
            type="status",
            timestamp=utc_now(),
            source="overwatch",
            subject=topology.entity_lifecycle_subject(org_id, "status"),
            data=LifecycleData(
                entity_id=entity_id,
                org_id=org_id,
                status=view.get("status"),
                is_live=bool(view.get("is_live")),
                entity_type=view.get("entity_type"),
            ),
        )
        await self.ctx.js.publish(
            event.subject or "", encode(event), headers={"Nats-Msg-Id": f"{entity_id}-status-{revision}"}
        )
