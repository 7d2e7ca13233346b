"""One alerts package: the built-in alerts are default rules, one acknowledge path, one history."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import msgspec

from app.runtime import Runtime
from core import topology
from db import alerts as alerts_db
from db import audit as audit_db
from db import rules as rules_db
from db.rules import RuleEventRow, RuleRow
from services.alerts import engine
from services.alerts.defaults import DEFAULT_RULE_IDS, alert_of
from services.alerts.model import RuleForm, validate
from services.alerts.sources import Reading
from services.audit import Actor
from tests.app.test_rules import evaluator_ticks, rule, without_default_rules
from tests.helpers import eventually, seed, telemetry

ADMIN = Actor("tests")


async def _status(rt: Runtime, alert_id: str, status: str) -> bool:
    row = await alerts_db.get_alert(rt.db, alert_id)
    return row is not None and row.status == status


async def _events(rt: Runtime, alert_id: str) -> list[RuleEventRow]:
    return [e for e in await rules_db.list_events(rt.db, limit=500) if e.alert_id == alert_id]


async def _set_enabled(rt: Runtime, rule_id: str, enabled: bool) -> None:
    row = await rt.services.rules.get(rule_id)
    form = RuleForm(
        name=row.name,
        kind=row.kind,
        threshold=row.threshold,
        severity=row.severity,
        duration_s=row.duration_s,
        cooldown_s=row.cooldown_s,
        enabled="on" if enabled else "",
    )
    await rt.services.rules.update(ADMIN, rule_id, validate(form))


# ---------------------------------------------------------------- the default rules


def test_the_battery_rule_clears_five_points_above_its_threshold_and_keeps_firing_without_data() -> None:
    spec, track = rule("battery", 20), engine.Track()
    battery = {"margin": 5.0, "keep_missing": True}
    assert engine.step(spec, track, "e", 12, now=0, snoozed=False, **battery) is not None
    assert engine.step(spec, track, "e", None, now=1, snoozed=False, **battery) is None and track.firing
    assert engine.step(spec, track, "e", 24, now=2, snoozed=False, **battery) is None and track.firing
    assert engine.step(spec, track, "e", 25, now=3, snoozed=False, **battery) == engine.Transition("resolve", "e", 25)


def test_default_alerts_read_as_the_built_in_alerts_did() -> None:
    battery = _default_row("battery", 20, "warning")
    low = alert_of(battery, Reading("e1", 15.0, {}), "e1", "Drone 1")
    assert (low.alert_id, low.kind, low.severity, low.title, low.reason) == (
        "battery:e1",
        "battery",
        "warning",
        "Battery low on Drone 1",
        "battery below 20%",
    )
    very_low = alert_of(battery, Reading("e1", 8.0, {}), "e1", "Drone 1")
    assert (very_low.severity, very_low.reason) == ("high", "battery below 10%")
    threat = _default_row("threat", 2, "elevated")
    detail = {"track_id": "t1", "level": "HIGH_THREAT", "label": "rifle", "reason": "armed", "confidence": 0.9}
    high = alert_of(threat, Reading("cam:t1", 3.0, detail), "cam", "Camera")
    assert (high.alert_id, high.severity, high.title, high.reason, high.track_id) == (
        "threat:cam:t1",
        "high",
        "High Threat: rifle at Camera",
        "armed",
        "t1",
    )
    moderate = alert_of(threat, Reading("cam:t2", 2.0, {**detail, "level": "MODERATE_THREAT"}), "cam", "Camera")
    assert moderate.severity == "elevated"
    offline = alert_of(_default_row("offline", 10, "warning"), Reading("e1", 12.0, {}), "e1", "Drone 1")
    assert (offline.alert_id, offline.title, offline.reason) == (
        "offline:e1",
        "Drone 1 offline",
        "no telemetry for more than 10s",
    )


def _default_row(builtin: str, threshold: float, severity: str) -> RuleRow:
    return RuleRow(
        rule_id=DEFAULT_RULE_IDS[builtin],
        name=builtin,
        kind=builtin,
        threshold=threshold,
        severity=severity,
        duration_s=0,
        cooldown_s=0,
        window_s=300,
        enabled=True,
        org_id="",
        entity_id="",
        snoozed_until=None,
        snoozed_by=None,
        created_by="system",
        created_at="t",
        updated_at="t",
        builtin=builtin,
    )


async def test_default_rules_are_seeded_with_the_settings_thresholds(make_runtime: Any) -> None:
    rt: Runtime = await make_runtime(offline_after=3.0, battery_alert_percent=30.0)

    async def synced() -> dict[str, float] | None:
        rows = {r.builtin: r.threshold for r in await rt.services.rules.list_rules() if r.builtin}
        return rows if rows == {"offline": 3.0, "battery": 30.0, "threat": 2.0} else None

    await eventually(synced, what="default rules with the settings' thresholds")
    # An edited default rule keeps what the admin chose; deleting one is refused (disable it instead).
    row = await rt.services.rules.get(DEFAULT_RULE_IDS["battery"])
    form = RuleForm(name=row.name, kind="battery", threshold=15, severity="high", cooldown_s=0, enabled="on")
    await rt.services.rules.update(ADMIN, row.rule_id, validate(form))
    await rt.services.rules.sync_defaults()
    assert (await rt.services.rules.get(row.rule_id)).threshold == 15
    for bad in (
        rt.services.rules.delete(ADMIN, row.rule_id),
        rt.services.rules.update(ADMIN, row.rule_id, validate(RuleForm(name="x", kind="offline", threshold=5))),
    ):
        try:
            await bad
        except Exception as exc:  # noqa: BLE001
            assert getattr(exc, "status_code", None) == 422, exc
        else:
            raise AssertionError("a default rule was deleted or changed kind")
    assert await rt.services.rules.find(row.rule_id) is not None


async def test_the_rules_page_lists_the_default_rules_which_are_disabled_not_deleted(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    page = await client.get("/alerts/rules")
    assert page.status_code == 200
    for name in ("Entity offline", "Battery low", "Threat detected"):
        assert name in page.text, name
    assert page.text.count(">default</span>") == 3
    rule_page = await client.get(f"/alerts/rules/{DEFAULT_RULE_IDS['battery']}")
    assert rule_page.status_code == 200 and "/delete" not in rule_page.text and 'value="offline"' not in rule_page.text
    refused = await client.post(f"/alerts/rules/{DEFAULT_RULE_IDS['battery']}/delete")
    assert refused.status_code == 422 and "disable it instead" in refused.text
    assert await runtime.services.rules.find(DEFAULT_RULE_IDS["battery"]) is not None


async def test_disabling_the_default_offline_rule_stops_offline_alerts(make_runtime: Any) -> None:
    """Acceptance: the built-in offline alert is a default rule, and disabling it stops offline alerts."""
    rt: Runtime = await make_runtime(offline_after=1.0)
    e0, e1 = await seed(rt, entities=2)
    cache = rt.services.state_cache
    offline_rule = DEFAULT_RULE_IDS["offline"]
    # Enabled (as seeded): silence raises the offline alert, as a firing of the default rule.
    await rt.js.publish(topology.telemetry_subject("org1", e0), telemetry())
    alert = await eventually(lambda: alerts_db.get_alert(rt.db, f"offline:{e0}"), timeout=8, what="offline alert")
    assert alert.kind == "offline" and alert.org_id == "org1" and alert.status == "active"
    [event] = await _events(rt, f"offline:{e0}")
    assert (event.rule_id, event.subject, event.org_id, event.resolved_at) == (offline_rule, e0, "org1", None)

    # Disabled: the open alert clears, and an entity going silent raises none.
    await _set_enabled(rt, offline_rule, False)
    await eventually(lambda: _status(rt, f"offline:{e0}", "cleared"), what="offline alert cleared by disabling")
    assert (await alerts_db.get_alert(rt.db, f"offline:{e0}")).reason == "rule disabled"  # type: ignore[union-attr]
    await rt.js.publish(topology.telemetry_subject("org1", e1), telemetry())
    await eventually(lambda: (cache.get(e1) or {}).get("is_live"), what=f"{e1} live")
    await eventually(lambda: (cache.get(e1) or {}).get("is_live") is False, timeout=6, what=f"{e1} marked offline")
    await evaluator_ticks(rt)  # every rule evaluated on the silent entity, after it was marked offline
    assert await alerts_db.get_alert(rt.db, f"offline:{e1}") is None
    assert await rules_db.open_events(rt.db) == []

    # Enabled again: the same silence raises it (what was held back was the rule, nothing else).
    await _set_enabled(rt, offline_rule, True)
    await eventually(lambda: _status(rt, f"offline:{e1}", "active"), timeout=8, what="offline alert once re-enabled")


async def test_low_battery_escalates_and_withheld_state_clears_it(runtime: Runtime) -> None:
    (e0,) = await seed(runtime, entities=1)
    subject = topology.telemetry_subject("org1", e0)
    await runtime.js.publish(subject, telemetry(battery=15.0))
    row = await eventually(lambda: alerts_db.get_alert(runtime.db, f"battery:{e0}"), what="battery alert")
    assert (row.severity, row.reason, row.title) == ("warning", "battery below 20%", "Battery low on ent 0")
    await runtime.js.publish(subject, telemetry(battery=8.0))

    async def escalated() -> bool:
        current = await alerts_db.get_alert(runtime.db, f"battery:{e0}")
        return current is not None and current.severity == "high" and current.reason == "battery below 10%"

    await eventually(escalated, what="escalated below half the threshold")
    [event] = await _events(runtime, f"battery:{e0}")
    assert event.rule_id == DEFAULT_RULE_IDS["battery"] and event.value == 15.0 and event.threshold == 20.0
    # A value naming another organisation is withheld: the alert it had clears, none is raised elsewhere.
    await runtime.kv_state.put(e0, msgspec.json.encode({"entity_id": e0, "org_id": "org9", "is_live": True}))
    await eventually(lambda: _status(runtime, f"battery:{e0}", "cleared"), what="cleared when withheld")
    cleared = await alerts_db.get_alert(runtime.db, f"battery:{e0}")
    assert cleared is not None and cleared.org_id == "org1" and cleared.reason.startswith("state not shown")
    assert [e.resolved_at is not None for e in await _events(runtime, f"battery:{e0}")] == [True]


async def test_default_threat_rule_raises_one_alert_per_tracked_threat(runtime: Runtime) -> None:
    (cam,) = await seed(runtime, entities=1, prefix="cam", entity_type="isr_sensor")

    def state(*alerts: dict[str, Any]) -> bytes:
        # With the registry's name, as every value the server writes carries it: a value without one is
        # conformed by the state keeper in a second revision, and the alert's title would follow whichever
        # revision the rule saw first ("cam-0", then "cam 0").
        intel = {"threat_alerts": list(alerts)}
        doc = {"entity_id": cam, "name": "cam 0", "is_live": True, "c4isr": {"threat_intelligence": intel}}
        return msgspec.json.encode(doc)

    rifle = {"track_id": "t1", "alert_type": "HIGH_THREAT", "label": "rifle", "reason": "weapon", "confidence": 0.9}
    bag = {"track_id": "t2", "alert_type": "MEDIUM_THREAT", "label": "bag", "reason": "left behind"}
    person = {"track_id": "t3", "alert_type": "LOW_THREAT", "label": "person"}
    await runtime.kv_state.put(cam, state(rifle, bag, person))
    high = await eventually(lambda: alerts_db.get_alert(runtime.db, f"threat:{cam}:t1"), what="HIGH threat alert")
    moderate = await eventually(lambda: alerts_db.get_alert(runtime.db, f"threat:{cam}:t2"), what="MODERATE alert")
    assert (high.severity, high.title, high.reason, high.track_id) == (
        "high",
        "High Threat: rifle at cam 0",
        "weapon",
        "t1",
    )
    assert (moderate.severity, moderate.title) == ("elevated", "Moderate Threat: bag at cam 0")
    assert await alerts_db.get_alert(runtime.db, f"threat:{cam}:t3") is None  # low: below the rule's threshold
    # The bag is no longer tracked: its alert clears, the rifle's stays.
    await runtime.kv_state.put(cam, state(rifle, person))
    await eventually(lambda: _status(runtime, f"threat:{cam}:t2", "cleared"), what="bag alert cleared")
    assert (await alerts_db.get_alert(runtime.db, f"threat:{cam}:t2")).reason == "object no longer tracked"  # type: ignore[union-attr]
    assert await _status(runtime, f"threat:{cam}:t1", "active")
    assert {(e.subject, e.resolved_at is None) for e in await rules_db.list_events(runtime.db)} == {
        (f"{cam}:t1", True),
        (f"{cam}:t2", False),
    }


async def test_a_condition_held_without_new_state_fires_after_its_duration(runtime: Runtime) -> None:
    """Between full ticks, a held battery condition still fires when its duration is up (no new telemetry)."""
    await without_default_rules(runtime)
    (e0,) = await seed(runtime, entities=1)
    form = RuleForm(name="slow", kind="battery", threshold=50, duration_s=2.5, cooldown_s=0, enabled="on")
    await runtime.services.rules.create(ADMIN, validate(form))
    await evaluator_ticks(runtime, 1)  # loaded: the next full tick has run
    await runtime.js.publish(topology.telemetry_subject("org1", e0), telemetry(battery=30.0))
    [event] = await eventually(lambda: rules_db.open_events(runtime.db), timeout=10, what="fired after 2.5 s")
    assert event.subject == e0 and event.value == 30.0
    row = await rules_db.get_event(runtime.db, event.event_id)
    assert row is not None and row.fired_at


# ---------------------------------------------------------------- one acknowledge path, one history


async def test_acknowledging_by_api_console_or_rule_history_is_one_path(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """Acceptance: the REST API, the alerts page and the rule history acknowledge through one method,
    so each leaves the same trace: the alert row, every firing behind it, one audit entry."""
    ids = await seed(runtime, entities=3)
    for entity_id in ids:
        await runtime.js.publish(topology.telemetry_subject("org1", entity_id), telemetry(battery=10.0))
    for entity_id in ids:
        # The firing is recorded before its alert is raised: an alert on the page has its history.
        await eventually(lambda e=entity_id: alerts_db.get_alert(runtime.db, f"battery:{e}"), what=f"{entity_id} alert")
    via_api, via_page, via_history = (f"battery:{e}" for e in ids)

    response = await client.post(f"/api/v1/alerts/{quote(via_api, safe='')}/ack")
    assert response.status_code == 200 and response.json()["acknowledged_by"] == "apikey:tests"
    response = await client.post(f"/alerts/{quote(via_page, safe='')}/ack")
    assert response.status_code in (200, 303)
    [event] = await _events(runtime, via_history)
    response = await client.post(f"/alerts/rules/events/{event.event_id}/ack")
    assert response.status_code in (200, 303)

    for alert_id in (via_api, via_page, via_history):
        row = await alerts_db.get_alert(runtime.db, alert_id)
        assert row is not None and row.acknowledged_by == "apikey:tests", alert_id
        [event] = await _events(runtime, alert_id)
        assert (event.acknowledged_by, event.acknowledged_at) == (row.acknowledged_by, row.acknowledged_at), alert_id
    entries = await audit_db.query_audit(runtime.db, limit=100)
    acks = sorted((a.action, a.target) for a in entries if a.action.endswith(".acknowledge"))
    [history_event] = await _events(runtime, via_history)
    assert acks == sorted(
        [
            ("alert.acknowledge", via_api),
            ("alert.acknowledge", via_page),
            ("rule.acknowledge", history_event.event_id),
        ]
    )
    # Idempotent: acknowledging again changes nothing and records nothing.
    assert (await client.post(f"/api/v1/alerts/{quote(via_page, safe='')}/ack")).status_code == 200
    assert (await client.post(f"/alerts/{quote(via_api, safe='')}/ack")).status_code in (200, 303)
    again = await audit_db.query_audit(runtime.db, limit=100)
    assert len([a for a in again if a.action.endswith(".acknowledge")]) == 3


async def test_threat_alerts_from_detection_events_are_not_adopted_by_the_threat_rule(runtime: Runtime) -> None:
    """After a restart, the threat rule adopts active threat alerts with no firing behind them,
    except those the event projection raised from detection events: a ``lost`` event clears
    those, so every node of a cluster keeps the same alert list whatever its state cache holds."""
    alerts = runtime.services.rules.alerts
    common = {"kind": "threat", "severity": "high", "title": "High Threat: rifle", "reason": "armed"}
    await alerts.raise_alert("threat:cam-a:t1", **common, data={"label": "rifle", "source": "detection"})
    await alerts.raise_alert("threat:cam-a:t2", **common, data={"label": "rifle"})  # raised before default rules
    adopted = [a.alert_id for a in await runtime.services.rules.alerts_without_firing("threat")]
    assert adopted == ["threat:cam-a:t2"]
