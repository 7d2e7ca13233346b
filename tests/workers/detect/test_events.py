"""Smart-publishing boundaries (strict ``>``) and the exact JSON of every event the worker sends."""

from __future__ import annotations

import msgspec
import pytest

from core.contracts.events import DetectionEvent, GenericEvent
from workers.detect.events import Identity, Snapshot, boot_event, detection_event, publish_reason, shutdown_event

IDENT = Identity("org-1", "cam-1", "0123456789abcdef", "overwatch-synthetic-detector")
SUBJECT = "constellation.events.isr.org-1.cam-1"
BASE = Snapshot("person", 0.5, 0.5, 0.5, "LOW_THREAT")


def _with(**changes: object) -> Snapshot:
    return Snapshot(**{**BASE.__dict__, **changes})  # type: ignore[arg-type]


def test_new_object_is_published() -> None:
    assert publish_reason(None, BASE, 0.05, 0.1) == "new"
    assert publish_reason(BASE, BASE, 0.05, 0.1) is None


@pytest.mark.parametrize(
    ("changed", "expected"),
    [
        ({"cx": 0.55}, None),  # exactly 0.05: not more than the threshold
        ({"cx": 0.5501}, "moved"),
        ({"cx": 0.53, "cy": 0.54}, None),  # distance 0.05 exactly (3-4-5)
        ({"cx": 0.53, "cy": 0.5401}, "moved"),
        ({"confidence": 0.6}, None),  # |Δ| = 0.1 exactly
        ({"confidence": 0.6001}, "confidence_changed"),
        ({"confidence": 0.3999}, "confidence_changed"),
        ({"label": "car"}, "label_changed"),
        ({"threat_level": "HIGH_THREAT"}, "threat_changed"),
    ],
)
def test_thresholds_are_strict(changed: dict[str, object], expected: str | None) -> None:
    # Fractions chosen so that float rounding cannot decide the boundary cases.
    base = Snapshot("person", 0.5, 0.5, 0.5, "LOW_THREAT")
    cur = _with(**changed)
    assert publish_reason(base, cur, 0.05 + 1e-12, 0.1 + 1e-12) == expected


def test_detection_event_exact_json() -> None:
    event = detection_event(
        IDENT,
        SUBJECT,
        track_id="k1234567890abcdefghijklm",
        seq=3,
        label="weapon",
        confidence=0.87314,
        bbox=(0.41, 0.22, 0.47333, 0.35),
        frame_timestamp="2026-11-23T10:00:00.000000+00:00",
        native_id=7,
        threat_level="HIGH_THREAT",
        indicators=["high_confidence_weapon_detection"],
        reason="new",
        threat_reason="High threat: weapon detected with high confidence (87%)",
        timestamp="2026-11-23T10:00:00.100000+00:00",
    )
    assert event.subject == SUBJECT
    assert event.headers == {
        "Nats-Msg-Id": "cam-1:k1234567890abcdefghijklm:3",
        "Content-Type": "application/json",
        "Event-Type": "detection",
        "Device-ID": "0123456789abcdef",
        "Threat-Level": "HIGH_THREAT",
        "Label": "weapon",
    }
    assert event.payload == (
        b'{"timestamp":"2026-11-23T10:00:00.100000+00:00","event_type":"detection","entity_id":"cam-1",'
        b'"device_id":"0123456789abcdef","organization_id":"org-1","org_id":"org-1",'
        b'"detection":{"track_id":"k1234567890abcdefghijklm","model_type":"overwatch-synthetic-detector",'
        b'"label":"weapon","confidence":0.8731,"bbox":{"x_min":0.41,"y_min":0.22,"x_max":0.4733,"y_max":0.35},'
        b'"timestamp":"2026-11-23T10:00:00.000000+00:00","metadata":{"native_id":7,"threat_level":"HIGH_THREAT",'
        b'"suspicious_indicators":["high_confidence_weapon_detection"],"event_reason":"new",'
        b'"threat_reason":"High threat: weapon detected with high confidence (87%)"}}}'
    )
    # and the server's own contract reads it
    parsed = msgspec.json.decode(event.payload, type=DetectionEvent)
    assert parsed.organization == "org-1" and parsed.detection is not None


def test_bootsequence_exact_json() -> None:
    event = boot_event(IDENT, SUBJECT, "b00t", {"device_id": "0123456789abcdef"}, timestamp="T0")
    assert event.headers["Nats-Msg-Id"] == "cam-1:boot:b00t"
    assert event.headers["Event-Type"] == "bootsequence"
    assert msgspec.json.decode(event.payload) == {
        "timestamp": "T0",
        "event_type": "bootsequence",
        "entity_id": "cam-1",
        "device_id": "0123456789abcdef",
        "organization_id": "org-1",
        "org_id": "org-1",
        "message": "Overwatch ISR component initialized: overwatch-synthetic-detector",
        "source": {"device_id": "0123456789abcdef"},
    }
    assert list(msgspec.json.decode(event.payload)) == [
        "timestamp",
        "event_type",
        "entity_id",
        "device_id",
        "organization_id",
        "org_id",
        "message",
        "source",
    ]
    assert msgspec.json.decode(event.payload, type=GenericEvent).resolve_entity_id() == "cam-1"


def test_shutdown_exact_json() -> None:
    event = shutdown_event(IDENT, SUBJECT, "b00t", {"total_unique_objects": 4}, timestamp="T9")
    assert event.headers["Nats-Msg-Id"] == "cam-1:shutdown:b00t"
    assert event.payload == (
        b'{"timestamp":"T9","event_type":"shutdown","entity_id":"cam-1","device_id":"0123456789abcdef",'
        b'"organization_id":"org-1","org_id":"org-1","message":"Overwatch ISR component shutting down gracefully",'
        b'"final_analytics":{"total_unique_objects":4}}'
    )
