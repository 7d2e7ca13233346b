"""Where a rule's value comes from: an entity's state view, or the system probe."""

from __future__ import annotations

from typing import Any

from core.timefmt import parse_time
from services.console.cards import threat_rank
from services.metrics.probe import SystemProbe


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


def system_values(kind: str, probe: SystemProbe, window_s: float, now: float) -> dict[str, float | None]:
    """``{subject: value}`` of a system rule (one subject per consumer for ``consumer_lag``)."""
    if kind == "consumer_lag":
        return {name: float(c.pending) for name, c in probe.consumers.items()}
    if kind == "dlq_growth":
        return {"dead-letter": probe.dlq_growth(window_s, now)}
    if kind == "disk_free":
        return {"disk": probe.disk_free_percent}
    return {}
