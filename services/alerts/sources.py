"""Where a rule's value comes from: an entity's state view, or the system probe.

A rule reads one value per subject. An entity rule's subject is the entity, except for
the default threat rule, which reads one value per threat the detection worker keeps in
``c4isr.threat_intelligence.threat_alerts`` (subject ``<entity>:<track>``), so each
threatening object is an alert of its own.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from core.contracts.state import threat_word
from services.console.cards import threat_rank
from services.metrics.probe import SystemProbe
from services.state_view import EntityView


class Reading(NamedTuple):
    """One subject's value, and what an alert about it shows (default rules)."""

    subject: str
    value: float | None
    detail: dict[str, Any]


def entity_value(kind: str, view: EntityView, now: float) -> float | None:
    """The measured value of an entity rule, or ``None`` when the state does not say."""
    if kind == "offline":
        return None if view.last_seen_s is None else max(0.0, now - view.last_seen_s)
    if kind == "battery":
        return view.battery
    if kind == "threat":
        levels = [o.threat_level for o in view.objects] + [a.alert_type for a in view.threat_alerts]
        return float(max((threat_rank(level) for level in levels), default=0))
    return None


def silent_for(view: EntityView, now: float) -> float | None:
    """Seconds since an entity marked offline was last seen (``None``: live, or never seen).

    What the default offline rule reads: the liveness sweep (``OVERWATCH_OFFLINE_AFTER``, or a
    CoT stale time) or a shutdown event marks an entity offline; an entity that never
    reported is not offline, just not seen yet.
    """
    if view.is_live or view.reported_s is None:
        return None
    return max(0.0, now - view.reported_s)


def threat_readings(entity_id: str, view: EntityView) -> list[Reading]:
    """One reading per tracked threat (level 1 low, 2 moderate, 3 high), keyed by its track."""
    found: dict[str, Reading] = {}
    for alert in view.threat_alerts:
        level = threat_word(alert.alert_type or None)
        if not alert.track_id or level is None:
            continue
        detail = {  # an upstream client's word read as the seeds'
            "track_id": alert.track_id,
            "level": level,
            "label": alert.label or "object",
            "reason": alert.reason,
            "confidence": alert.confidence,
        }
        found[alert.track_id] = Reading(f"{entity_id}:{alert.track_id}", float(threat_rank(level)), detail)
    return list(found.values())


def entity_readings(kind: str, builtin: str, entity_id: str, view: EntityView, now: float) -> list[Reading]:
    """What an entity rule of ``kind`` reads from one entity (``builtin``: a default rule)."""
    if builtin == "threat":
        return threat_readings(entity_id, view)
    if builtin == "offline":
        return [Reading(entity_id, silent_for(view, now), {})]
    return [Reading(entity_id, entity_value(kind, view, now), {})]


def rule_inputs(doc: dict[str, Any]) -> tuple[Any, ...]:
    """What entity rules read from a merged state document, besides the time.

    Two documents with equal inputs give every entity rule the same reading, except that
    time passes: the offline kinds' ages, which the evaluator's tick advances. A live
    entity's ``last_seen`` is left out (a newer one only makes it younger, never offline).
    Read from the document, not the typed view, so that the many changes no rule reads (a
    new position at telemetry rates) are recognised without decoding the view. Keep in
    step with ``entity_value``, ``silent_for`` and ``threat_readings``.
    """
    live = doc.get("is_live") is True
    c4isr = doc.get("c4isr")
    power = doc.get("power")
    return (
        doc.get("org_id"),
        doc.get("name"),
        live,
        None if live else (doc.get("last_seen"), doc.get("updated_at")),
        power.get("battery_remaining") if isinstance(power, dict) else power,
        doc.get("detections"),
        c4isr.get("threat_intelligence") if isinstance(c4isr, dict) else c4isr,
    )


def system_values(kind: str, probe: SystemProbe, window_s: float, now: float) -> dict[str, float | None]:
    """``{subject: value}`` of a system rule (one subject per consumer for ``consumer_lag``)."""
    if kind == "consumer_lag":
        return {name: float(c.pending) for name, c in probe.consumers.items()}
    if kind == "dlq_growth":
        return {"dead-letter": probe.dlq_growth(window_s, now)}
    if kind == "disk_free":
        return {"disk": probe.disk_free_percent}
    return {}
