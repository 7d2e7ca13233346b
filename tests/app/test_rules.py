"""Alert rules: the state machine, the evaluator with a real runtime and simulator, the page's access rules."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import msgspec
import pytest

from app.main import create_app
from app.runtime import Runtime
from core import topology
from core.topics import Topic
from db import alerts as alerts_db
from db import audit as audit_db
from db import rules as rules_db
from services.alerts import engine
from services.alerts.defaults import DEFAULT_RULE_IDS
from services.alerts.model import RuleForm, RuleSpec, validate
from services.alerts.sources import rule_inputs
from services.hub import Update
from services.schemas import EntityCreate
from tests.helpers import eventually, seed, telemetry
from workers.rules import RuleEvaluator, event_gap
from workers.simulator import FaultConfig, Simulator, make_fleet


def rule(kind: str = "battery", threshold: float = 20, duration: float = 0, cooldown: float = 0) -> RuleSpec:
    """A validated rule spec for the state-machine tests."""
    return validate(
        RuleForm(name="r", kind=kind, threshold=threshold, duration_s=duration, cooldown_s=cooldown, enabled="on")
    )


# ---------------------------------------------------------------- state machine


def test_fires_only_after_the_condition_held_for_the_duration() -> None:
    spec, track = rule(duration=5), engine.Track()
    assert engine.step(spec, track, "e", 10, now=100, snoozed=False) is None  # starts holding
    assert engine.step(spec, track, "e", 10, now=104.9, snoozed=False) is None
    fired = engine.step(spec, track, "e", 12, now=105, snoozed=False)
    assert fired == engine.Transition("fire", "e", 12)
    assert engine.step(spec, track, "e", 12, now=106, snoozed=False) is None  # fires once, not every tick


def test_a_break_restarts_the_duration() -> None:
    spec, track = rule(duration=5), engine.Track()
    engine.step(spec, track, "e", 10, now=0, snoozed=False)
    engine.step(spec, track, "e", 50, now=3, snoozed=False)  # recovered in between
    assert engine.step(spec, track, "e", 10, now=6, snoozed=False) is None
    assert engine.step(spec, track, "e", 10, now=11, snoozed=False) is not None


def test_resolves_when_the_condition_stops_holding() -> None:
    spec, track = rule(), engine.Track()
    assert engine.step(spec, track, "e", 5, now=0, snoozed=False) is not None
    resolved = engine.step(spec, track, "e", 30, now=1, snoozed=False)
    assert resolved == engine.Transition("resolve", "e", 30)
    assert engine.step(spec, track, "e", 30, now=2, snoozed=False) is None


def test_missing_value_never_fires_and_resolves() -> None:
    spec, track = rule(), engine.Track()
    assert engine.step(spec, track, "e", None, now=0, snoozed=False) is None
    engine.step(spec, track, "e", 5, now=1, snoozed=False)
    assert engine.step(spec, track, "e", None, now=2, snoozed=False) == engine.Transition("resolve", "e", None)


def test_cooldown_spaces_firings() -> None:
    spec, track = rule(cooldown=60), engine.Track()
    assert engine.step(spec, track, "e", 5, now=0, snoozed=False) is not None
    engine.step(spec, track, "e", 50, now=1, snoozed=False)  # resolved
    assert engine.step(spec, track, "e", 5, now=10, snoozed=False) is None  # holds again within the cooldown
    assert engine.step(spec, track, "e", 5, now=59.9, snoozed=False) is None
    assert engine.step(spec, track, "e", 5, now=60, snoozed=False) is not None


def test_snooze_holds_back_new_firings_until_it_ends() -> None:
    spec, track = rule(duration=2), engine.Track()
    assert engine.step(spec, track, "e", 5, now=0, snoozed=True) is None
    assert engine.step(spec, track, "e", 5, now=10, snoozed=True) is None
    assert engine.step(spec, track, "e", 5, now=11, snoozed=False) is not None  # held long enough already


def test_snooze_does_not_stop_a_resolution() -> None:
    spec, track = rule(), engine.Track()
    engine.step(spec, track, "e", 5, now=0, snoozed=False)
    assert engine.step(spec, track, "e", 90, now=1, snoozed=True) is not None


def test_event_rounds_back_off_to_a_tenth_of_the_process_under_a_flood() -> None:
    """Quick rounds run ten times a second; a round that took 50 ms waits 450 ms; never more than a second."""
    assert event_gap(0.001) == pytest.approx(0.1)
    assert event_gap(0.05) == pytest.approx(0.45)
    assert event_gap(0.5) == pytest.approx(1.0)


def test_rule_inputs_ignore_what_no_rule_reads() -> None:
    """A new position, or a newer last_seen of a live entity, leaves every entity rule's reading as it was."""
    base = {
        "org_id": "org1",
        "name": "Drone 1",
        "is_live": True,
        "last_seen": "2026-11-27T08:00:00.000Z",
        "power": {"battery_remaining": 80.0, "voltage": 12.1},
        "position": {"global": {"latitude": 37.0, "longitude": -122.0}},
    }
    moved = {
        **base,
        "last_seen": "2026-11-27T08:00:01.000Z",
        "power": {"battery_remaining": 80.0, "voltage": 12.0},
        "position": {"global": {"latitude": 37.1, "longitude": -122.0}},
    }
    assert rule_inputs(moved) == rule_inputs(base)
    changed = [
        {**base, "power": {"battery_remaining": 79.0}},
        {**base, "is_live": False},
        {**base, "name": "Drone one"},
        {**base, "org_id": "org2"},
        {**base, "detections": {"objects": {"t1": {"threat_level": "HIGH_THREAT"}}}},
        {**base, "c4isr": {"threat_intelligence": {"threat_alerts": [{"alert_type": "HIGH", "track_id": "t1"}]}}},
    ]
    for doc in changed:
        assert rule_inputs(doc) != rule_inputs(base), doc
    offline = {**base, "is_live": False}
    assert rule_inputs({**offline, "last_seen": "2026-11-27T08:00:05.000Z"}) != rule_inputs(offline)


def test_comparisons_per_kind() -> None:
    assert engine.holds(rule("offline", 5), 5.1) and not engine.holds(rule("offline", 5), 5)
    assert engine.holds(rule("threat", 2), 2) and not engine.holds(rule("threat", 3), 2)
    assert engine.holds(rule("disk_free", 10), 9) and not engine.holds(rule("disk_free", 10), 11)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kind": "nope"}, "kind"),
        ({"severity": "loud"}, "severity"),
        ({"name": " "}, "name"),
        ({"kind": "battery", "threshold": 150}, "percentage"),
        ({"kind": "threat", "threshold": 7}, "threat level"),
        ({"kind": "disk_free", "threshold": 5, "org_id": "org1"}, "whole system"),
        ({"entity_id": "a b"}, "entity_id"),
        ({"duration_s": -1}, "duration_s"),
    ],
)
def test_invalid_rules_are_refused_with_the_field_named(changes: dict[str, Any], message: str) -> None:
    from core.errors import Invalid

    base = {"name": "r", "kind": "battery", "threshold": 20.0}
    with pytest.raises(Invalid, match=message):
        validate(msgspec.convert({**base, **changes}, RuleForm))


# ---------------------------------------------------------------- with a real runtime


async def without_default_rules(runtime: Runtime) -> None:
    """Setup for the tests of added rules: a database with no default rules (they fire on their own)."""
    for rule_id in DEFAULT_RULE_IDS.values():
        await rules_db.delete_rule(runtime.db, rule_id)
        runtime.hub.publish(Update(Topic.RULES, f"rule:{rule_id}"))
    evaluator = next(w for w in runtime.workers.workers if w.name == "rules")
    await eventually(lambda: not set(DEFAULT_RULE_IDS.values()) & set(evaluator.by_id), what="default rules unloaded")


@pytest.mark.timeout(120)
async def test_offline_rule_fires_resolves_and_ack_is_audited(runtime: Runtime, client: httpx.AsyncClient) -> None:
    """The acceptance test: "entity offline > 5 s" fires when the simulator stops an entity."""
    await without_default_rules(runtime)
    ids = await seed(runtime, entities=2)
    assert runtime.nc is not None
    sim = Simulator(
        runtime.nc, make_fleet("org1", [(i, "aircraft_multirotor") for i in ids], (37.0, -122.0)), 4, FaultConfig()
    )
    stop = asyncio.Event()
    task = asyncio.create_task(sim.run(stop))
    try:
        cache = runtime.services.state_cache
        await eventually(lambda: all((cache.get(i) or {}).get("is_live") for i in ids), what="fleet live")
        response = await client.post(
            "/alerts/rules",
            data={
                "name": "Lost link",
                "kind": "offline",
                "threshold": "5",
                "severity": "high",
                "cooldown_s": "0",
                "enabled": "on",
                "org_id": "org1",
            },
        )
        assert response.status_code in (200, 303), response.text
        rules = await rules_db.list_rules(runtime.db)
        assert [r.name for r in rules] == ["Lost link"]
        rule_id = rules[0].rule_id
        await evaluator_ticks(runtime)  # the rule has been evaluated on every live entity
        assert await rules_db.open_events(runtime.db) == []  # live entities do not fire

        sim.pause("ent-1")
        paused = time.monotonic()
        events = await eventually(lambda: rules_db.open_events(runtime.db), timeout=12, what="rule fired")
        took = time.monotonic() - paused
        assert 4.5 <= took <= 8.5, f"fired after {took:.1f}s"
        assert [(e.subject, e.rule_id) for e in events] == [("ent-1", rule_id)]
        assert events[0].value > 5 and events[0].threshold == 5
        # The firing's alert row is written beside the firing (not in its transaction): wait for it.
        alert = await eventually(lambda: alerts_db.get_alert(runtime.db, events[0].alert_id), what="the alert")
        assert alert is not None and alert.kind == "rule" and alert.status == "active" and alert.org_id == "org1"

        sim.resume("ent-1")

        async def resolved() -> bool:
            row = await rules_db.get_event(runtime.db, events[0].event_id)
            return bool(row and row.resolved_at)

        await eventually(resolved, timeout=10, what="rule resolved")

        # The alert is cleared just after the firing is resolved (the same call, not the same transaction).
        async def cleared() -> alerts_db.AlertRow | None:
            row = await alerts_db.get_alert(runtime.db, events[0].alert_id)
            return row if row is not None and row.status == "cleared" else None

        alert = await eventually(cleared, what="the alert cleared")
        assert alert is not None and alert.status == "cleared"
        assert await rules_db.open_events(runtime.db) == []

        ack = await client.post(f"/alerts/rules/events/{events[0].event_id}/ack")
        assert ack.status_code in (200, 303)
        row = await rules_db.get_event(runtime.db, events[0].event_id)
        assert row is not None and row.acknowledged_by == "apikey:tests"
        alert = await alerts_db.get_alert(runtime.db, events[0].alert_id)
        assert alert is not None and alert.acknowledged_by == "apikey:tests"
        actions = [a.action for a in await audit_db.query_audit(runtime.db, limit=50)]
        assert "rule.acknowledge" in actions and "rule.create" in actions
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_system_rule_fires_and_deleting_it_resolves(runtime: Runtime) -> None:
    from services.audit import Actor

    service = runtime.services.rules
    actor = Actor("tests")
    # Free disk is always below 100 %: fires on the next tick.
    row = await service.create(actor, validate(RuleForm(name="disk", kind="disk_free", threshold=100, enabled="on")))
    events = await eventually(lambda: rules_db.open_events(runtime.db), timeout=8, what="disk rule fired")
    assert events[0].subject == "disk" and events[0].org_id == "" and 0 <= events[0].value < 100
    await service.delete(actor, row.rule_id)
    await eventually(lambda: _no_open(runtime), timeout=8, what="resolved after delete")
    actions = [a.action for a in await audit_db.query_audit(runtime.db, limit=20)]
    assert {"rule.create", "rule.delete"} <= set(actions)


async def evaluator_ticks(rt: Runtime, ticks: int = 2) -> None:
    """Wait until the rule evaluator has completed ``ticks`` more ticks (a tick evaluates every rule on every
    subject). Two ticks: the first may have begun before the caller's change; the second began after it."""
    evaluator = next(w for w in rt.workers.workers if w.name == "rules")
    target = evaluator.stats.processed + ticks
    await eventually(lambda: evaluator.stats.processed >= target, timeout=5 + ticks, what=f"{ticks} evaluator ticks")


async def _no_open(rt: Runtime) -> bool:
    return not await rules_db.open_events(rt.db)


async def test_snooze_holds_back_and_is_audited(runtime: Runtime) -> None:
    from services.audit import Actor

    service = runtime.services.rules
    actor = Actor("tests")
    row = await service.create(actor, validate(RuleForm(name="d", kind="disk_free", threshold=100, enabled="")))
    await service.snooze(actor, row.rule_id, 30)
    spec = validate(RuleForm(name="d", kind="disk_free", threshold=100, enabled="on"))
    await service.update(actor, row.rule_id, spec)
    await evaluator_ticks(runtime, 3)  # evaluated, enabled, while snoozed
    assert await rules_db.open_events(runtime.db) == []  # snoozed: no firing
    await service.snooze(actor, row.rule_id, 0)
    await eventually(lambda: rules_db.open_events(runtime.db), timeout=8, what="fires after the snooze ends")
    actions = [a.action for a in await audit_db.query_audit(runtime.db, limit=20)]
    assert actions.count("rule.snooze") == 2 and "rule.update" in actions


async def test_bad_state_never_stops_the_evaluator(runtime: Runtime) -> None:
    from services.audit import Actor

    await without_default_rules(runtime)
    await seed(runtime, entities=1)
    for entity_id in ("weird", "low"):  # only registered entities' state reaches the rules
        await runtime.services.registry.create_entity("org1", EntityCreate(entity_id=entity_id, entity_type="waypoint"))
    service = runtime.services.rules
    await service.create(Actor("t"), validate(RuleForm(name="b", kind="battery", threshold=20, enabled="on")))
    await service.create(Actor("t"), validate(RuleForm(name="o", kind="offline", threshold=5, enabled="on")))
    await service.create(Actor("t"), validate(RuleForm(name="t", kind="threat", threshold=2, enabled="on")))
    bad = {
        "entity_id": "weird",
        "org_id": "org1",
        "power": "full",
        "last_seen": "yesterday",
        "detections": {"objects": ["not", "a", "dict"]},
        "c4isr": {"threat_intelligence": {"threat_alerts": 5}},
    }
    await runtime.kv_state.put("weird", msgspec.json.encode(bad))
    low = {"entity_id": "low", "org_id": "org1", "power": {"battery_remaining": 5}}
    await runtime.kv_state.put("low", msgspec.json.encode(low))
    events = await eventually(lambda: rules_db.open_events(runtime.db), timeout=8, what="battery fired")
    assert [(e.subject, e.rule_name) for e in events] == [("low", "b")]
    evaluator = next(w for w in runtime.workers.workers if w.name == "rules")
    await evaluator_ticks(runtime)  # whole ticks over the malformed state, after the event-driven round
    assert runtime.workers.status()["rules"] is True and evaluator.stats.restarts == 0


async def test_viewer_sees_no_controls_and_gets_403(runtime: Runtime, client: httpx.AsyncClient) -> None:
    from services.audit import Actor

    service = runtime.services.rules
    row = await service.create(
        Actor("t"), validate(RuleForm(name="disk", kind="disk_free", threshold=100, enabled="on"))
    )
    events = await eventually(lambda: rules_db.open_events(runtime.db), timeout=8, what="fired")
    viewer = await runtime.services.apikeys.create("tests", "viewer", ["read"], None)
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers={"Authorization": f"Bearer {viewer.key}"}
    ) as as_viewer:
        page = await as_viewer.get("/alerts/rules")
        assert page.status_code == 200 and "disk" in page.text
        controls = ("Create rule", "/snooze", "/ack", f'href="/alerts/rules/{row.rule_id}"')
        for control in controls:
            assert control not in page.text, control
        admin_page = await client.get("/alerts/rules")
        assert all(c in admin_page.text for c in controls)
        form = {"name": "x", "kind": "battery", "threshold": "10"}
        calls = [
            ("POST", "/alerts/rules", form),
            ("GET", f"/alerts/rules/{row.rule_id}", None),
            ("POST", f"/alerts/rules/{row.rule_id}", form),
            ("POST", f"/alerts/rules/{row.rule_id}/delete", None),
            ("POST", f"/alerts/rules/{row.rule_id}/snooze", {"minutes": "5"}),
            ("POST", f"/alerts/rules/events/{events[0].event_id}/ack", None),
        ]
        for method, path, data in calls:
            response = await as_viewer.request(method, path, data=data)
            assert response.status_code == 403, (method, path, response.status_code)
    assert await rules_db.get_rule(runtime.db, row.rule_id) is not None
    denied = await audit_db.query_audit(runtime.db, action="auth.denied", limit=20)
    assert len(denied) >= len(calls)


async def test_invalid_form_is_a_422_with_the_reason(client: httpx.AsyncClient) -> None:
    response = await client.post("/alerts/rules", data={"name": "x", "kind": "battery", "threshold": "500"})
    assert response.status_code == 422
    assert "percentage" in response.text


async def test_a_change_no_rule_reads_is_left_alone_and_a_battery_drop_still_fires(runtime: Runtime) -> None:
    """Event-driven rounds skip an entity whose rule inputs did not change (a new position); a change
    they read (the battery) is evaluated at once and the default battery rule fires."""
    (e0,) = await seed(runtime, entities=1)
    evaluator = next(w for w in runtime.workers.workers if isinstance(w, RuleEvaluator))
    subject = topology.telemetry_subject("org1", e0)
    await runtime.js.publish(subject, telemetry(battery=80.0))
    await eventually(lambda: e0 in evaluator.inputs, what="the entity evaluated")
    skipped, moves = evaluator.skipped, [0]

    async def left_alone() -> bool:
        # Keep moving: a change the tick takes first is evaluated (and recorded), not skipped.
        moves[0] += 1
        await runtime.js.publish(subject, telemetry(lat=37.0 + moves[0] * 1e-4, battery=80.0))
        return evaluator.skipped > skipped

    await eventually(left_alone, interval=0.2, what="a position change left alone")
    assert await alerts_db.get_alert(runtime.db, f"battery:{e0}") is None
    await runtime.js.publish(subject, telemetry(battery=3.0))
    alert = await eventually(lambda: alerts_db.get_alert(runtime.db, f"battery:{e0}"), what="the battery alert")
    assert alert is not None and alert.status == "active"
