"""RuleEvaluator: runs every enabled rule, on state changes and on a one-second tick.

State changes of an entity re-evaluate that entity's rules at once; the tick
advances durations, offline ages and the system rules. Bad data or a failing write
is logged and counted, never fatal: the next tick tries again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from db import rules as rules_db
from db.rules import RuleRow
from services.alerts import engine
from services.alerts.model import KINDS, RuleSpec
from services.alerts.service import RULES_TOPIC, RuleService
from services.alerts.sources import entity_value, system_values
from services.alerts.store import AlertService
from services.audit import AuditService
from services.hub import Update
from services.metrics.probe import SystemProbe
from services.state_cache import STATE_TOPIC, StateCache
from workers.base import Worker, WorkerContext

log = logging.getLogger("overwatch.rules")

TICK_S = 1.0
EVENT_GAP_S = 0.1  # at most ten event-driven evaluation rounds per second
PROBE_MAX_AGE_S = 2.0  # system figures are re-read at most this often for rules


def spec_of(row: RuleRow) -> RuleSpec:
    """The evaluable part of a stored rule."""
    return RuleSpec(
        name=row.name,
        kind=row.kind,
        threshold=row.threshold,
        severity=row.severity,
        duration_s=row.duration_s,
        cooldown_s=row.cooldown_s,
        window_s=row.window_s,
        enabled=row.enabled,
        org_id=row.org_id,
        entity_id=row.entity_id,
    )


class RuleEvaluator(Worker):
    """Evaluates alert rules in the server process (one per node)."""

    name = "rules"

    def __init__(self, ctx: WorkerContext, state_cache: StateCache, audit: AuditService, alerts: AlertService) -> None:
        super().__init__(ctx)
        self.state_cache = state_cache
        self.audit = audit
        self.alerts = alerts
        self.rules: list[tuple[RuleRow, RuleSpec]] = []
        self.watch_entities = False  # any enabled entity rule?
        self.tracks: dict[tuple[str, str], engine.Track] = {}
        self.dirty: set[str] = set()
        self.reload = True
        self.wake = asyncio.Event()
        self.service: RuleService | None = None
        # Its own probe: read only while system rules exist, independent of the metrics sampler.
        self.probe = SystemProbe(ctx.settings.data_path)
        ctx.hub.add_listener(self._on_update)

    def _on_update(self, update: Update) -> None:
        if update.topic == STATE_TOPIC:
            if self.watch_entities:  # called for every state change: keep it to a flag check
                self.dirty.add(update.key)
                self.wake.set()
        elif update.topic == RULES_TOPIC and update.key.startswith("rule:"):
            self.reload = True
            self.wake.set()

    async def run(self) -> None:
        """Evaluate until stopped."""
        self.service = RuleService(self.ctx.db, self.ctx.hub, self.audit, self.alerts)
        await self._resume_open()
        next_tick = 0.0
        while not self.stopping.is_set():
            self.wake.clear()
            if self.reload:
                self.reload = False
                await self._load()
            now = time.time()
            try:
                if now >= next_tick:
                    next_tick = now + TICK_S
                    self.dirty.clear()
                    await self.tick(now)
                elif self.dirty:
                    dirty, self.dirty = self.dirty, set()
                    await self.evaluate_entities(now, dirty)
                    # Changes arriving meanwhile pile up in ``dirty`` and are evaluated together.
                    await asyncio.sleep(EVENT_GAP_S)
            except Exception as exc:
                self.stats.failed += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("rule evaluation failed")
            try:
                await asyncio.wait_for(self.wake.wait(), max(0.05, next_tick - time.time()))
            except TimeoutError:
                pass

    async def _load(self) -> None:
        try:
            rows = await rules_db.list_rules(self.ctx.db)
        except Exception:
            self.reload = True  # try again on the next tick
            log.exception("loading rules failed")
            return
        self.rules = [(row, spec_of(row)) for row in rows if row.kind in KINDS]
        self.watch_entities = any(spec.enabled and KINDS[spec.kind].per_entity for _row, spec in self.rules)

    async def _resume_open(self) -> None:
        """Firings left open by a previous run are firing tracks, so they resolve rather than repeat."""
        try:
            for event in await rules_db.open_events(self.ctx.db):
                track = self.tracks.setdefault((event.rule_id, event.subject), engine.Track())
                track.firing = True
                track.last_fired = time.time()
        except Exception:
            log.exception("resuming open rule events failed")

    async def tick(self, now: float) -> None:
        """Evaluate every rule on every subject; resolve what no longer has a rule or subject."""
        live: set[tuple[str, str]] = set()
        await self.evaluate_entities(now, None, live)
        system = [(row, spec) for row, spec in self.rules if spec.enabled and not KINDS[spec.kind].per_entity]
        if system:
            await self.probe.refresh(self.ctx.js, PROBE_MAX_AGE_S)
        for row, spec in system:
            for subject, value in system_values(spec.kind, self.probe, spec.window_s, now).items():
                live.add((row.rule_id, subject))
                await self._step(row, spec, subject, value, now)
        for key in [k for k in self.tracks if k not in live]:
            track = self.tracks[key]
            transition = engine.stop(track, key[1])
            if transition is not None:
                await self._apply(None, key[0], transition)
            if not track.firing:
                del self.tracks[key]
        self.stats.processed += 1
        self.stats.last_message_at = now

    async def evaluate_entities(
        self, now: float, only: set[str] | None, live: set[tuple[str, str]] | None = None
    ) -> None:
        """Evaluate entity rules for ``only`` those entities (every entity when None)."""
        entity_rules = [(row, spec) for row, spec in self.rules if spec.enabled and KINDS[spec.kind].per_entity]
        if not entity_rules:
            return
        cache = self.state_cache
        ids = cache.all().keys() if only is None else only
        for entity_id in list(ids):
            view = cache.get(entity_id)
            if view is None:
                continue
            org_id = str(view.get("org_id") or "")
            for row, spec in entity_rules:
                if (spec.org_id and spec.org_id != org_id) or (spec.entity_id and spec.entity_id != entity_id):
                    continue
                if live is not None:
                    live.add((row.rule_id, entity_id))
                try:
                    value = entity_value(spec.kind, view, now)
                except Exception as exc:  # noqa: BLE001 - malformed state must not stop the other rules
                    self.stats.failed += 1
                    self.stats.last_error = f"{entity_id}: {type(exc).__name__}: {exc}"
                    log.warning("rule %s: cannot read %s from %s: %s", row.name, spec.kind, entity_id, exc)
                    continue
                await self._step(row, spec, entity_id, value, now, view)

    async def _step(
        self,
        row: RuleRow,
        spec: RuleSpec,
        subject: str,
        value: float | None,
        now: float,
        view: dict[str, Any] | None = None,
    ) -> None:
        track = self.tracks.setdefault((row.rule_id, subject), engine.Track())
        snoozed = row.snoozed_until is not None and row.snoozed_until > now
        transition = engine.step(spec, track, subject, value, now, snoozed)
        if transition is not None:
            await self._apply(row, row.rule_id, transition, view)

    async def _apply(
        self, row: RuleRow | None, rule_id: str, transition: engine.Transition, view: dict[str, Any] | None = None
    ) -> None:
        assert self.service is not None
        try:
            if transition.action == "fire" and row is not None and transition.value is not None:
                view = view or {}
                per_entity = KINDS[row.kind].per_entity
                await self.service.fire(
                    row,
                    transition.subject,
                    transition.value,
                    org_id=str(view.get("org_id") or "") if per_entity else "",
                    entity_id=transition.subject if per_entity else "",
                    name=str(view.get("name") or transition.subject),
                )
                log.info("rule %r fired on %s (value %g)", row.name, transition.subject, transition.value)
            elif transition.action == "resolve":
                await self.service.resolve(rule_id, transition.subject, transition.value)
                log.info("rule %s resolved on %s", rule_id, transition.subject)
        except Exception as exc:
            self.stats.failed += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("applying %s of rule %s on %s failed", transition.action, rule_id, transition.subject)
