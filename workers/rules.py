"""RuleEvaluator: runs every enabled rule, on state changes and on a one-second tick.

The one evaluator of alert rules: the default rules (the built-in offline, low-battery
and threat alerts, ``services.alerts.defaults``) and the rules admins add. State changes
of an entity re-evaluate that entity's rules at once (in the order the changes arrived;
under a telemetry flood the rounds space out so they take at most a tenth of the process);
the tick advances durations, offline ages and the system rules, and resolves what no
longer has a rule or a subject. An entity that is deleted, unregistered or whose state is
withheld (a value naming another organisation) resolves its firings at once. Alerts are
raised in the organisation the registry places the entity in (the state cache's view says
it), never one a value names. Bad data or a failing write is logged and counted, never
fatal: the next tick tries again.
"""

from __future__ import annotations

import asyncio
import logging
import time

from core.structs import as_view
from core.topics import Topic
from db.rules import RuleRow
from services.alerts import defaults, engine
from services.alerts.defaults import BATTERY_MARGIN, DEFAULT_RULE_IDS
from services.alerts.model import KINDS, RuleSpec
from services.alerts.service import RuleService
from services.alerts.sources import Reading, entity_readings, rule_inputs, system_values
from services.hub import Update
from services.metrics.probe import SystemProbe
from services.state_cache import StateCache
from services.state_view import EntityView
from workers.base import Worker, WorkerContext

log = logging.getLogger("overwatch.rules")

TICK_S = 1.0
EVENT_GAP_S = 0.1  # at most ten event-driven evaluation rounds per second
SLICE_S = 0.005  # seconds a round evaluates before it lets other tasks run
BUSY_SHARE = 0.1  # rounds (event-driven and ticks) take at most this share of the process under a telemetry flood
MAX_EVENT_GAP_S = 1.0  # and still run at least once a second (as the tick does)
PROBE_MAX_AGE_S = 2.0  # system figures are re-read at most this often for rules
FULL_EVERY = 10  # ticks between two full evaluations (every rule on every subject)

Key = tuple[str, str]  # (rule_id, subject)


def busy_gap(round_s: float) -> float:
    """Seconds to leave to the rest of the process after a round that took ``round_s`` (CPU-bound, so measured,
    not clocked): rounds, the tick's included, take at most ``BUSY_SHARE`` of it."""
    return min(MAX_EVENT_GAP_S, round_s * (1 - BUSY_SHARE) / BUSY_SHARE)


def event_gap(round_s: float) -> float:
    """Seconds to wait after an event-driven round that took ``round_s``."""
    return max(EVENT_GAP_S, busy_gap(round_s))


def spec_of(row: RuleRow) -> RuleSpec:
    """The evaluable part of a stored rule."""
    return as_view(row, RuleSpec)


class RuleEvaluator(Worker):
    """Evaluates alert rules in the server process (one per node)."""

    name = "rules"

    def __init__(self, ctx: WorkerContext, state_cache: StateCache, rules: RuleService) -> None:
        super().__init__(ctx)
        self.state_cache = state_cache
        self.service = rules
        self.rules: list[tuple[RuleRow, RuleSpec]] = []
        self.by_id: dict[str, RuleRow] = {}
        self.watch_entities = False  # any enabled entity rule?
        self.tracks: dict[Key, engine.Track] = {}
        self.entity_tracks: dict[str, set[Key]] = {}  # entity -> its tracks (of every rule)
        self.dirty: dict[str, None] = {}  # entities changed since the last round, in arrival order
        self.inputs: dict[str, tuple[object, ...]] = {}  # what the rules read of each entity when last evaluated
        self.skipped = 0  # changes an event-driven round left alone: nothing a rule reads changed
        self.reload = True
        self.full_due = True  # the next tick evaluates every rule on every subject
        self.wake = asyncio.Event()
        # Its own probe: read only while system rules exist, independent of the metrics sampler.
        self.probe = SystemProbe(ctx.settings.data_path)
        ctx.hub.add_listener(self._on_update)

    def _on_update(self, update: Update) -> None:
        if update.topic == Topic.STATE:
            if self.watch_entities:  # called for every state change: keep it to a flag check
                self.dirty[update.key] = None
                self.wake.set()
        elif update.topic == Topic.RULES and update.key.startswith("rule:"):
            self.reload = True
            self.wake.set()

    async def run(self) -> None:
        """Evaluate until stopped."""
        try:
            await self.service.sync_defaults()
        except Exception:
            log.exception("setting the default rules' thresholds failed")
        await self._resume_open()
        next_tick = 0.0
        ticks = 0
        while not self.stopping.is_set():
            self.wake.clear()
            if self.reload:
                self.reload = False
                await self._load()
                self.full_due = True
            now = self.ctx.clock.now()
            try:
                if now >= next_tick:
                    next_tick = now + TICK_S
                    ticks += 1
                    full, self.full_due = self.full_due or ticks % FULL_EVERY == 0, False
                    dirty, self.dirty = list(self.dirty), {}
                    started = time.perf_counter()
                    await self.tick(now, full, dirty)
                    await asyncio.sleep(busy_gap(time.perf_counter() - started))
                elif self.dirty:
                    dirty, self.dirty = list(self.dirty), {}
                    started = time.perf_counter()
                    await self.evaluate_entities(now, dirty, settle=True, changed=True, skip_unchanged=True)
                    # Changes arriving meanwhile pile up in ``dirty`` and are evaluated together; the
                    # longer a round took (every entity changing), the more of them the next one takes.
                    await asyncio.sleep(event_gap(time.perf_counter() - started))
            except Exception as exc:
                self.stats.failed += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("rule evaluation failed")
            try:
                await asyncio.wait_for(self.wake.wait(), max(0.05, next_tick - self.ctx.clock.now()))
            except TimeoutError:
                pass

    async def _load(self) -> None:
        try:
            rows = await self.service.list_rules()
        except Exception:
            self.reload = True  # try again on the next tick
            log.exception("loading rules failed")
            return
        self.rules = [(row, spec_of(row)) for row in rows if row.kind in KINDS]
        self.inputs.clear()  # evaluated afresh under the new rules
        self.by_id = {row.rule_id: row for row, _spec in self.rules}
        self.watch_entities = any(spec.enabled and KINDS[spec.kind].per_entity for _row, spec in self.rules)

    async def _resume_open(self) -> None:
        """Firings left open by a previous run are firing tracks, so they resolve rather than repeat.

        So are active built-in alerts raised before they were default rules (no firing behind
        them): they clear like a firing when their condition no longer holds.
        """
        now = self.ctx.clock.now()
        try:
            for event in await self.service.open_events():
                self._resume((event.rule_id, event.subject), event.entity_id, now)
            for builtin, rule_id in DEFAULT_RULE_IDS.items():
                for alert in await self.service.alerts_without_firing(builtin):
                    subject = alert.alert_id.removeprefix(f"{builtin}:")
                    self._resume((rule_id, subject), alert.entity_id, now)
        except Exception:
            log.exception("resuming open rule events failed")

    def _resume(self, key: Key, entity_id: str, now: float) -> None:
        track = self._track(key, entity_id)
        track.firing = True
        track.last_fired = now

    def _track(self, key: Key, entity_id: str) -> engine.Track:
        track = self.tracks.get(key)
        if track is None:
            track = self.tracks[key] = engine.Track(entity_id=entity_id)
            if entity_id:
                self.entity_tracks.setdefault(entity_id, set()).add(key)
        return track

    def _forget(self, key: Key) -> None:
        track = self.tracks.pop(key, None)
        if track is not None and track.entity_id:
            keys = self.entity_tracks.get(track.entity_id)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self.entity_tracks[track.entity_id]

    async def tick(self, now: float, full: bool = True, changed: list[str] | None = None) -> None:
        """Advance time: offline ages, durations and cooldowns, the system rules; then ``changed`` entities.

        A ``full`` tick (after rules changed, and every ``FULL_EVERY`` ticks) evaluates every
        rule on every subject and resolves what no longer has a rule or a subject. Between
        them, rules whose value does not depend on time (battery, threat) are evaluated on
        state changes, and here only where a condition holds but has not fired yet. Entities
        that changed since the last round come last, in the order they changed.
        """
        changed = changed or []
        live: set[Key] = set()
        entity_rules = self._entity_rules()
        swept = [(r, s) for r, s in entity_rules if full or s.kind == "offline"]  # read on every subject
        recent = set(changed)
        others = [e for e in self.state_cache.all() if e not in recent]  # ids only: views decode when read
        await self.evaluate_entities(now, others, swept, live)
        if not full:
            await self._pending(now, [(r, s) for r, s in entity_rules if s.kind != "offline"], recent)
        system = [(row, spec) for row, spec in self.rules if spec.enabled and not KINDS[spec.kind].per_entity]
        if system:
            await self.probe.refresh(self.ctx.js, PROBE_MAX_AGE_S)
        for row, spec in system:
            for subject, value in system_values(spec.kind, self.probe, spec.window_s, now).items():
                live.add((row.rule_id, subject))
                await self._step(row, spec, Reading(subject, value, {}), now)
        await self.evaluate_entities(now, changed, entity_rules, live, settle=True, changed=True)
        covered = {row.rule_id for row, _spec in (*swept, *system)}
        for key in [k for k in self.tracks if k not in live and (full or k[0] in covered)]:
            await self._stop(key)
        self.stats.processed += 1
        self.stats.last_message_at = now

    def _entity_rules(self) -> list[tuple[RuleRow, RuleSpec]]:
        return [(row, spec) for row, spec in self.rules if spec.enabled and KINDS[spec.kind].per_entity]

    async def _pending(self, now: float, rules: list[tuple[RuleRow, RuleSpec]], skip: set[str]) -> None:
        """Re-evaluate the entities whose condition holds without having fired (duration, cooldown, snooze)."""
        wanted = {row.rule_id for row, _spec in rules}
        pending: dict[str, set[str]] = {}
        for (rule_id, _subject), track in self.tracks.items():
            if rule_id in wanted and track.since is not None and not track.firing and track.entity_id not in skip:
                pending.setdefault(track.entity_id, set()).add(rule_id)
        for entity_id, rule_ids in pending.items():
            view = self.state_cache.view(entity_id)
            if view is not None:
                chosen = [(row, spec) for row, spec in rules if row.rule_id in rule_ids]
                await self._evaluate_entity(entity_id, view, chosen, now, set(), changed=False)

    async def evaluate_entities(
        self,
        now: float,
        ids: list[str],
        rules: list[tuple[RuleRow, RuleSpec]] | None = None,
        live: set[Key] | None = None,
        *,
        settle: bool = False,
        changed: bool = False,
        skip_unchanged: bool = False,
    ) -> None:
        """Evaluate entity rules (``rules``, else every enabled one) on the entities ``ids``.

        ``live`` collects what was read. ``settle``: the entities' tracks that their rules no
        longer read are resolved at once (an entity removed or withheld, a threat no longer
        tracked). ``changed``: their state changed (a firing default rule re-raises its alert).
        ``skip_unchanged``: an entity whose rule inputs are those of its last evaluation and none of
        whose tracks holds or fires is left alone (its readings would be the same; time is the tick's).
        """
        entity_rules = self._entity_rules() if rules is None else rules
        cache = self.state_cache
        slice_end = time.perf_counter() + SLICE_S
        for entity_id in ids:
            if time.perf_counter() >= slice_end:
                # A round over a thousand entities takes a tenth of a second or more: run it in slices
                # so the live streams and the telemetry writes are not held up behind it.
                await asyncio.sleep(0)
                slice_end = time.perf_counter() + SLICE_S
            if changed:
                doc = cache.get(entity_id)
                inputs = rule_inputs(doc) if doc is not None else None
                if skip_unchanged and self._unchanged(entity_id, inputs):
                    self.skipped += 1
                    continue
                if inputs is None:
                    self.inputs.pop(entity_id, None)
                else:
                    self.inputs[entity_id] = inputs
            view = cache.view(entity_id)
            seen: set[Key] = set()
            if view is not None and entity_rules:
                await self._evaluate_entity(entity_id, view, entity_rules, now, seen, changed)
            if live is not None:
                live |= seen
            if settle and entity_id in self.entity_tracks:
                for key in [k for k in self.entity_tracks[entity_id] if k not in seen]:
                    await self._stop(key)

    def _unchanged(self, entity_id: str, inputs: tuple[object, ...] | None) -> bool:
        """Nothing the rules read of the entity changed since its last evaluation, and none of its
        tracks holds its condition or fires: evaluating it again would change nothing."""
        if inputs is None or self.inputs.get(entity_id) != inputs:
            return False
        tracks = self.tracks
        return all(tracks[k].since is None and not tracks[k].firing for k in self.entity_tracks.get(entity_id, ()))

    async def _evaluate_entity(
        self,
        entity_id: str,
        view: EntityView,
        entity_rules: list[tuple[RuleRow, RuleSpec]],
        now: float,
        seen: set[Key],
        changed: bool,
    ) -> None:
        org_id = view.org_id
        for row, spec in entity_rules:
            if (spec.org_id and spec.org_id != org_id) or (spec.entity_id and spec.entity_id != entity_id):
                continue
            try:
                readings = entity_readings(spec.kind, row.builtin, entity_id, view, now)
            except Exception as exc:  # noqa: BLE001 - malformed state must not stop the other rules
                self.stats.failed += 1
                self.stats.last_error = f"{entity_id}: {type(exc).__name__}: {exc}"
                log.warning("rule %s: cannot read %s from %s: %s", row.name, spec.kind, entity_id, exc)
                continue
            for reading in readings:
                seen.add((row.rule_id, reading.subject))
                await self._step(row, spec, reading, now, entity_id, view, changed)

    async def _step(
        self,
        row: RuleRow,
        spec: RuleSpec,
        reading: Reading,
        now: float,
        entity_id: str = "",
        view: EntityView | None = None,
        changed: bool = False,
    ) -> None:
        key = (row.rule_id, reading.subject)
        if reading.value is None and key not in self.tracks:
            return  # nothing to fire or resolve: no track kept for it (most entities, most of the time)
        track = self._track(key, entity_id)
        snoozed = row.snoozed_until is not None and row.snoozed_until > now
        battery = row.builtin == "battery"
        transition = engine.step(
            spec,
            track,
            reading.subject,
            reading.value,
            now,
            snoozed,
            margin=BATTERY_MARGIN if battery else 0.0,
            keep_missing=battery,
        )
        if transition is not None:
            await self._apply(row, row.rule_id, transition, reading, entity_id, view)
        elif track.firing and row.builtin and entity_id and view is not None and reading.value is not None:
            await self._update_alert(row, track, reading, entity_id, view, changed)

    async def _update_alert(
        self, row: RuleRow, track: engine.Track, reading: Reading, entity_id: str, view: EntityView, changed: bool
    ) -> None:
        """Keep a firing default rule's alert up to date: escalation, reason, re-raised after a state change."""
        spec = defaults.alert_of(row, reading, entity_id, view.name)
        if not changed and spec.shown() == track.shown:
            return
        try:
            await self.service.show(spec, org_id=view.org_id, entity_id=entity_id)
            track.shown = spec.shown()
        except Exception as exc:
            self.stats.failed += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("updating alert %s failed", spec.alert_id)

    async def _stop(self, key: Key) -> None:
        """The subject went away or the rule is off: resolve a firing track and forget it."""
        track = self.tracks[key]
        transition = engine.stop(track, key[1])
        if transition is not None:
            await self._apply(self.by_id.get(key[0]), key[0], transition, why=self._why_stopped(key, track))
        if not track.firing:
            self._forget(key)

    def _why_stopped(self, key: Key, track: engine.Track) -> str:
        """Why a track stopped being evaluated ("": its condition simply no longer applies)."""
        row = self.by_id.get(key[0])
        if row is None:
            return "rule deleted"
        if not row.enabled:
            return "rule disabled"
        if track.entity_id and self.state_cache.get(track.entity_id) is None:
            withheld = self.state_cache.withheld.get(track.entity_id)
            return f"state not shown ({withheld})" if withheld else "entity removed"
        return ""

    async def _apply(
        self,
        row: RuleRow | None,
        rule_id: str,
        transition: engine.Transition,
        reading: Reading | None = None,
        entity_id: str = "",
        view: EntityView | None = None,
        why: str = "",
    ) -> None:
        try:
            if transition.action == "fire" and row is not None and reading is not None:
                name = view.name if view is not None else entity_id or transition.subject
                org_id = view.org_id if view is not None else ""
                await self.service.fire(row, reading, org_id=org_id, entity_id=entity_id, name=name)
                if row.builtin:
                    track = self.tracks.get((rule_id, transition.subject))
                    if track is not None:
                        track.shown = defaults.alert_of(row, reading, entity_id, name).shown()
                log.info("rule %r fired on %s (value %g)", row.name, transition.subject, reading.value)
            elif transition.action == "resolve":
                builtin = row.builtin if row is not None else ""
                await self.service.resolve(rule_id, transition.subject, transition.value, builtin=builtin, why=why)
                log.info("rule %s resolved on %s", rule_id, transition.subject)
        except Exception as exc:
            self.stats.failed += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("applying %s of rule %s on %s failed", transition.action, rule_id, transition.subject)
