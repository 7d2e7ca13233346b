"""Detection-worker events: smart publishing decisions and the exact JSON of each event.

Envelopes follow the downstream PRD (``timestamp, event_type, entity_id, device_id,
organization_id, detection``) plus ``org_id``, which the upstream client sends and
consumers read. Every event carries a ``Nats-Msg-Id`` so a retry after a lost ack is
dropped by the stream's duplicate window instead of stored twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import msgspec

from core.contracts.common import utc_now

BOOT_MESSAGE = "Overwatch ISR component initialized: {model_type}"
# A tracked object's events: ``detection`` is a detection (new, moved, changed); an object that
# left the scene and one that came back get their own types, so a consumer reacting to
# ``event_type == "detection"`` (the downstream PRD's Pattern 1) never alerts on a departure.
EVENT_DETECTION = "detection"
EVENT_LOST = "lost"
EVENT_REAPPEARED = "reappeared"
EVENT_TYPES_BY_REASON = {"lost": EVENT_LOST, "reappeared": EVENT_REAPPEARED}
SHUTDOWN_MESSAGE = "Overwatch ISR component shutting down gracefully"


@dataclass(frozen=True)
class Snapshot:
    """What smart publishing compares: an object's state when it was last published."""

    label: str
    confidence: float
    cx: float  # bbox centre, normalised 0..1 per axis
    cy: float
    threat_level: str


def publish_reason(prev: Snapshot | None, cur: Snapshot, movement: float, confidence: float) -> str | None:
    """Why ``cur`` must be published, or None. Thresholds are strict ``>`` (upstream semantics).

    Movement is the Euclidean distance of the normalised bbox centre since the last
    *published* state, so slow drift accumulates until it counts.
    """
    if prev is None:
        return "new"
    if cur.label != prev.label:
        return "label_changed"
    if cur.threat_level != prev.threat_level:
        return "threat_changed"
    if abs(cur.confidence - prev.confidence) > confidence:
        return "confidence_changed"
    if math.hypot(cur.cx - prev.cx, cur.cy - prev.cy) > movement:
        return "moved"
    return None


@dataclass(frozen=True)
class Identity:
    """Who the worker publishes as."""

    org_id: str
    entity_id: str
    device_id: str
    model_type: str


@dataclass(frozen=True)
class Outgoing:
    """An event ready to send: subject, body, headers (with its ``Nats-Msg-Id``)."""

    subject: str
    payload: bytes
    headers: dict[str, str]
    track_id: str = ""

    @property
    def msg_id(self) -> str:
        """The deduplication id."""
        return self.headers["Nats-Msg-Id"]


def _envelope(ident: Identity, event_type: str, timestamp: str) -> dict[str, Any]:
    return {
        "timestamp": timestamp,
        "event_type": event_type,
        "entity_id": ident.entity_id,
        "device_id": ident.device_id,
        "organization_id": ident.org_id,
        "org_id": ident.org_id,
    }


def _headers(ident: Identity, event_type: str, msg_id: str, **extra: str) -> dict[str, str]:
    return {
        "Nats-Msg-Id": msg_id,
        "Content-Type": "application/json",
        "Event-Type": event_type,
        "Device-ID": ident.device_id,
        **extra,
    }


def detection_event(
    ident: Identity,
    subject: str,
    *,
    track_id: str,
    seq: int,
    label: str,
    confidence: float,
    bbox: tuple[float, float, float, float],
    frame_timestamp: str,
    native_id: int,
    threat_level: str,
    indicators: list[str],
    reason: str,
    threat_reason: str = "",
    timestamp: str | None = None,
    geo: dict[str, float] | None = None,
) -> Outgoing:
    """An object's event: ``event_type`` ``detection``, or ``lost`` / ``reappeared`` when ``reason`` says so.

    ``metadata.event_reason`` says which smart-publishing rule fired (``new``, ``moved``, …);
    ``metadata.geo`` is the object's projected ground position when the camera's pose is known.
    """
    metadata: dict[str, Any] = {
        "native_id": native_id,
        "threat_level": threat_level,
        "suspicious_indicators": indicators,
        "event_reason": reason,
    }
    if threat_reason:
        metadata["threat_reason"] = threat_reason
    if geo:
        metadata["geo"] = geo
    event_type = EVENT_TYPES_BY_REASON.get(reason, EVENT_DETECTION)
    body = _envelope(ident, event_type, timestamp or utc_now())
    body["detection"] = {
        "track_id": track_id,
        "model_type": ident.model_type,
        "label": label,
        "confidence": round(confidence, 4),
        "bbox": {
            "x_min": round(bbox[0], 4),
            "y_min": round(bbox[1], 4),
            "x_max": round(bbox[2], 4),
            "y_max": round(bbox[3], 4),
        },
        "timestamp": frame_timestamp,
        "metadata": metadata,
    }
    headers = _headers(
        ident, event_type, f"{ident.entity_id}:{track_id}:{seq}", **{"Threat-Level": threat_level, "Label": label}
    )
    return Outgoing(subject, msgspec.json.encode(body), headers, track_id)


def boot_event(
    ident: Identity, subject: str, boot_id: str, source: dict[str, Any], timestamp: str | None = None
) -> Outgoing:
    """``bootsequence``: the worker is up; ``source`` is the device fingerprint."""
    body = _envelope(ident, "bootsequence", timestamp or utc_now())
    body["message"] = BOOT_MESSAGE.format(model_type=ident.model_type)
    body["source"] = source
    return Outgoing(
        subject, msgspec.json.encode(body), _headers(ident, "bootsequence", f"{ident.entity_id}:boot:{boot_id}")
    )


def shutdown_event(
    ident: Identity, subject: str, boot_id: str, final_analytics: dict[str, Any] | None, timestamp: str | None = None
) -> Outgoing:
    """``shutdown``: the worker stops, with its final analytics."""
    body = _envelope(ident, "shutdown", timestamp or utc_now())
    body["message"] = SHUTDOWN_MESSAGE
    body["final_analytics"] = final_analytics
    return Outgoing(
        subject, msgspec.json.encode(body), _headers(ident, "shutdown", f"{ident.entity_id}:shutdown:{boot_id}")
    )
