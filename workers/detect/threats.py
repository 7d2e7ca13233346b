"""Threat grading: label → level, suspicious indicators, alert level, and threat alerts with reasons.

The default table is the upstream client's (its 24 prompt classes), plus the labels of
the two shipped models that it lacks: ``bag`` (like ``backpack``/``suitcase``) and ``drone``
of the synthetic-scene model are ``MODERATE_THREAT``; of the COCO model's 80 classes
(``COCO_TABLE``), weapon-like objects (knife, baseball bat, scissors) are ``HIGH_THREAT``,
bags that may be left unattended (handbag, backpack, suitcase) and large vehicles
(truck, bus) and aircraft ``MODERATE_THREAT``. **COCO has no drone and no firearm class**:
the COCO model cannot report either (a drone may come out as airplane, bird or kite).
Levels are the seeds' three (``LOW_THREAT``, ``MODERATE_THREAT``,
``HIGH_THREAT``); the upstream client's words are accepted in an operator's table and
normalised (``core/contracts/state.THREAT_ALIASES``). Operators replace or extend the table
with a JSON file ``{label: level}``. Unknown and harmless labels are ``LOW_THREAT``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from core.contracts.state import THREAT_ALIASES, THREAT_LEVELS, threat_word

LEVELS = THREAT_LEVELS  # LOW, MODERATE, HIGH
RANK = {level: i + 1 for i, level in enumerate(LEVELS)}  # LOW 1 … HIGH 3
ALERTING = ("HIGH_THREAT", "MODERATE_THREAT")
DEFAULT_LEVEL = "LOW_THREAT"  # a label the table does not name

DEFAULT_TABLE: dict[str, str] = {
    **dict.fromkeys(("weapon", "knife", "gun", "rifle", "pistol", "explosive", "bomb"), "HIGH_THREAT"),
    **dict.fromkeys(
        ("suspicious package", "unattended bag", "backpack", "suitcase", "unauthorized vehicle", "truck", "van"),
        "MODERATE_THREAT",
    ),
    **dict.fromkeys(
        ("person", "car", "bicycle", "motorcycle", "dog", "traffic light", "stop sign", "bench", "bird", "cat"),
        "LOW_THREAT",
    ),
    # Labels of the shipped synthetic-scene model that the upstream table does not name.
    "bag": "MODERATE_THREAT",
    "drone": "MODERATE_THREAT",
}
# The COCO model's classes that matter, in the seeds' words (those not named are LOW_THREAT).
# COCO has no drone and no firearm class: neither can be reported by that model.
COCO_TABLE: dict[str, str] = {
    **dict.fromkeys(("knife", "baseball bat", "scissors"), "HIGH_THREAT"),  # weapon-like
    **dict.fromkeys(("backpack", "handbag", "suitcase"), "MODERATE_THREAT"),  # a bag may be left unattended
    **dict.fromkeys(("truck", "bus"), "MODERATE_THREAT"),  # large vehicles, as upstream grades trucks and vans
    "airplane": "MODERATE_THREAT",  # an aircraft over a ground camera; also what a drone is often called
    **dict.fromkeys(
        ("person", "bicycle", "car", "motorcycle", "train", "boat", "bird", "kite", "umbrella", "sports ball"),
        "LOW_THREAT",
    ),
}
DEFAULT_TABLE.update(COCO_TABLE)


class ThreatTableError(ValueError):
    """The operator's threat table is not a JSON object of label → known level."""


def load_table(path: Path | None) -> dict[str, str]:
    """The default table, updated from ``path`` when given."""
    table = dict(DEFAULT_TABLE)
    if path is None:
        return table
    try:
        extra = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ThreatTableError(f"threat table {path}: {exc}") from exc
    if not isinstance(extra, dict):
        raise ThreatTableError(f"threat table {path}: expected a JSON object of label → level")
    for label, level in extra.items():
        word = threat_word(level)
        if word is None:
            accepted = ", ".join([*LEVELS, *THREAT_ALIASES])
            raise ThreatTableError(f"threat table {path}: {label!r} has level {level!r}; use one of {accepted}")
        table[str(label).lower()] = word
    return table


def indicators(level: str, confidence: float) -> list[str]:
    """Suspicious indicators (upstream rules, strict comparisons)."""
    if level == "HIGH_THREAT" and confidence > 0.7:
        return ["high_confidence_weapon_detection"]
    if level == "MODERATE_THREAT" and confidence > 0.5:
        return ["suspicious_object_detected"]
    if level == "HIGH_THREAT" and confidence < 0.5:
        return ["uncertain_threat_requires_validation"]
    return []


def alert_level(levels: list[str]) -> str:
    """``HIGH`` with any active HIGH_THREAT, else ``ELEVATED`` with any MODERATE_THREAT, else ``NORMAL``."""
    if "HIGH_THREAT" in levels:
        return "HIGH"
    if "MODERATE_THREAT" in levels:
        return "ELEVATED"
    return "NORMAL"


def reason(label: str, level: str, confidence: float) -> str:
    """A sentence an operator can act on."""
    certainty = "high" if confidence > 0.7 else "moderate" if confidence >= 0.5 else "low"
    what = {"HIGH_THREAT": "High threat", "MODERATE_THREAT": "Suspicious object"}.get(level, "Object")
    text = f"{what}: {label} detected with {certainty} confidence ({confidence:.0%})"
    if level == "HIGH_THREAT" and confidence < 0.5:
        text += "; needs validation"
    return text


@dataclass
class ThreatAlert:
    """An active threat alert of one tracked object."""

    track_id: str
    level: str
    label: str
    confidence: float
    reason: str
    first_detected: str
    timestamp: str
    escalated: bool = False

    def as_scope(self) -> dict[str, object]:
        """The ``c4isr.threat_intelligence.threat_alerts`` entry (KV spec shape plus context)."""
        return {
            "track_id": self.track_id,
            "alert_type": self.level,
            "reason": self.reason,
            "timestamp": self.timestamp,
            "label": self.label,
            "confidence": round(self.confidence, 4),
            "first_detected": self.first_detected,
            "status": "active",
        }


class ThreatBook:
    """Active threat alerts per track: raised, escalated when the level rises, cleared when the object is gone."""

    def __init__(self) -> None:
        self.active: dict[str, ThreatAlert] = {}
        self.raised = 0
        self.cleared = 0

    def observe(self, track_id: str, label: str, level: str, confidence: float, now: str) -> bool:
        """Record an object's current grade; True when an alert was raised or escalated."""
        current = self.active.get(track_id)
        if level not in ALERTING:
            return False
        if current is None:
            self.active[track_id] = ThreatAlert(
                track_id, level, label, confidence, reason(label, level, confidence), now, now
            )
            self.raised += 1
            return True
        if RANK[level] > RANK[current.level]:
            current.level, current.label, current.confidence = level, label, confidence
            current.reason, current.timestamp, current.escalated = reason(label, level, confidence), now, True
            return True
        current.confidence = max(current.confidence, confidence)
        return False

    def clear(self, track_id: str) -> bool:
        """The object is gone: drop its alert; True when there was one."""
        if self.active.pop(track_id, None) is None:
            return False
        self.cleared += 1
        return True

    def scope(self, limit: int = 10) -> list[dict[str, object]]:
        """Active alerts, most severe and newest first, at most ``limit``."""
        ordered = sorted(self.active.values(), key=lambda a: (RANK[a.level], a.timestamp), reverse=True)
        return [a.as_scope() for a in ordered[:limit]]
