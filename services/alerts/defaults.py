"""The default rules: the built-in offline, low-battery and threat alerts as rules of the engine.

They are rows of ``alert_rules`` (seeded by migration 0008, marked by ``builtin``) that the
one evaluator runs like any other rule: admins disable them, change their threshold,
severity or scope on ``/alerts/rules``, and their firings are in the same history. What
sets them apart is only how their alerts read, kept as the built-in alerts always read:

* alert ids and kinds ``offline:<entity>``, ``battery:<entity>``, ``threat:<entity>:<track>``;
* the battery alert escalates to ``high`` below half the threshold, and resolves only 5
  points above it (no flapping); a missing battery value changes nothing;
* a threat alert's severity follows the level (``HIGH_THREAT`` is ``high``), its reason is
  the detection worker's;
* no toast (they are frequent and already on the alerts page and the badge).

Until an admin edits a default rule, its threshold follows the setting it replaced
(``OVERWATCH_OFFLINE_AFTER``, ``OVERWATCH_BATTERY_ALERT_PERCENT``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from db.rules import RuleRow
from services.alerts.sources import Reading
from services.alerts.store import SEVERITY_RANK

DEFAULT_RULE_IDS = {"offline": "default-offline", "battery": "default-battery", "threat": "default-threat"}
SYSTEM = "system"  # created_by of the seeded rows
BATTERY_MARGIN = 5.0  # percentage points above the threshold before a low battery clears
THREAT_SEVERITY = {"HIGH_THREAT": "high"}  # at least this severity, by level


@dataclass(frozen=True)
class AlertSpec:
    """What a firing of a default rule raises (the arguments of ``AlertService.raise_alert``)."""

    alert_id: str
    kind: str
    severity: str
    title: str
    reason: str
    track_id: str = ""
    data: dict[str, Any] | None = None

    def shown(self) -> tuple[str, ...]:
        """What an update of the alert would change."""
        return (self.severity, self.title, self.reason)


def alert_id_of(rule_id: str, subject: str, builtin: str = "") -> str:
    """The alert that stands for one rule firing on one subject."""
    return f"{builtin}:{subject}" if builtin else f"rule:{rule_id}:{subject}"


def untouched(row: RuleRow) -> bool:
    """A seeded default rule nobody has edited (its threshold follows the settings)."""
    return bool(row.builtin) and row.created_by == SYSTEM and row.updated_at == row.created_at


def _at_least(severity: str, floor: str) -> str:
    return severity if SEVERITY_RANK.get(severity, 0) >= SEVERITY_RANK.get(floor, 0) else floor


def alert_of(rule: RuleRow, reading: Reading, entity_id: str, name: str) -> AlertSpec:
    """The alert a default rule shows for ``reading`` of entity ``entity_id`` named ``name``."""
    value = reading.value if reading.value is not None else 0.0
    alert_id = alert_id_of(rule.rule_id, reading.subject, rule.builtin)
    if rule.builtin == "battery":
        half = rule.threshold / 2
        return AlertSpec(
            alert_id,
            "battery",
            _at_least(rule.severity, "high") if value < half else rule.severity,
            f"Battery low on {name}",
            f"battery below {half:.0f}%" if value < half else f"battery below {rule.threshold:.0f}%",
        )
    if rule.builtin == "threat":
        detail = reading.detail
        level = str(detail.get("level") or "")
        label = detail.get("label") or "object"
        return AlertSpec(
            alert_id,
            "threat",
            _at_least(rule.severity, THREAT_SEVERITY.get(level, rule.severity)),
            f"{level.replace('_', ' ').title()}: {label} at {name}",
            str(detail.get("reason") or ""),
            track_id=str(detail.get("track_id") or ""),
            data={"label": label, "confidence": detail.get("confidence")},
        )
    return AlertSpec(
        alert_id, "offline", rule.severity, f"{name} offline", f"no telemetry for more than {rule.threshold:.0f}s"
    )


def cleared_reason(builtin: str, value: float | None) -> str:
    """Why a default rule's alert cleared when its condition stopped holding."""
    if builtin == "offline":
        return "telemetry resumed"
    if builtin == "battery" and value is not None:
        return f"battery recovered to {value:.0f}%"
    if builtin == "threat":
        return "object no longer tracked"
    return "condition cleared"
