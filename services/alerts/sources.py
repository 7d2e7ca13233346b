"""Where a rule's value comes from: an entity's state view, or the system probe.

A rule reads one value per subject. An entity rule's subject is the entity, except for
the default threat rule, which reads one value per threat the detection worker keeps in
``c4isr.threat_intelligence.threat_alerts`` (subject ``<entity>:<track>``), so each
threatening object is an alert of its own.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from core.contracts.state import threat_word
from core.timefmt import parse_time
from services.console.cards import threat_rank
from services.metrics.probe import SystemProbe


class Reading(NamedTuple):
    """One subject's value, and what an alert about it shows (default rules)."""

    subject: str
    value: float | None
    detail: dict[str, Any]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if number == number and abs(number) != float("inf") else None


def entity_value(kind: str, view: dict[str, Any], now: float) -> float | None:
    """The measured value of an entity rule, or ``None`` when the state does not say."""
    if kind == "offline":
        seen = parse_time(view.get("last_seen") or view.get("updated_at"))
        return None if seen is None else max(0.0, now - seen.timestamp())
    if kind == "battery":
        return _num(_dict(view.get("power")).get("battery_remaining"))
    if kind == "threat":
        levels = [
            str(_dict(o).get("threat_level") or "")
            for o in _dict(_dict(view.get("detections")).get("objects")).values()
        ]
        intel = _dict(_dict(view.get("c4isr")).get("threat_intelligence"))
        alerts = intel.get("threat_alerts")
        levels += [str(_dict(a).get("alert_type") or "") for a in (alerts if isinstance(alerts, list) else [])]
        return float(max((threat_rank(level) for level in levels), default=0))
    return None


def silent_for(view: dict[str, Any], now: float) -> float | None:
    """Seconds since an entity marked offline was last seen (``None``: live, or never seen).

    What the default offline rule reads: the liveness sweep (``OVERWATCH_OFFLINE_AFTER``, or a
    CoT stale time) or a shutdown event marks an entity offline; an entity that never
    reported is not offline, just not seen yet.
    """
    if view.get("is_live"):
        return None
    seen = parse_time(view.get("last_seen"))
    return None if seen is None else max(0.0, now - seen.timestamp())


def threat_readings(entity_id: str, view: dict[str, Any]) -> list[Reading]:
    """One reading per tracked threat (level 1 low, 2 moderate, 3 high), keyed by its track."""
    intel = _dict(_dict(view.get("c4isr")).get("threat_intelligence"))
    alerts = intel.get("threat_alerts")
    found: dict[str, Reading] = {}
    for alert in alerts if isinstance(alerts, list) else []:
        if not isinstance(alert, dict):
            continue
        track, level = alert.get("track_id"), threat_word(alert.get("alert_type"))
        if not isinstance(track, str) or not track or level is None:
            continue
        detail = {  # an upstream client's word read as the seeds'
            "track_id": track,
            "level": level,
            "label": alert.get("label") or "object",
            "reason": str(alert.get("reason") or ""),
            "confidence": alert.get("confidence"),
        }
        found[track] = Reading(f"{entity_id}:{track}", float(threat_rank(level)), detail)
    return list(found.values())


def entity_readings(kind: str, builtin: str, entity_id: str, view: dict[str, Any], now: float) -> list[Reading]:
    """What an entity rule of ``kind`` reads from one entity (``builtin``: a default rule)."""
    if builtin == "threat":
        return threat_readings(entity_id, view)
    if builtin == "offline":
        return [Reading(entity_id, silent_for(view, now), {})]
    return [Reading(entity_id, entity_value(kind, view, now), {})]


def system_values(kind: str, probe: SystemProbe, window_s: float, now: float) -> dict[str, float | None]:
    """``{subject: value}`` of a system rule (one subject per consumer for ``consumer_lag``)."""
    if kind == "consumer_lag":
        return {name: float(c.pending) for name, c in probe.consumers.items()}
    if kind == "dlq_growth":
        return {"dead-letter": probe.dlq_growth(window_s, now)}
    if kind == "disk_free":
        return {"disk": probe.disk_free_percent}
    return {}
