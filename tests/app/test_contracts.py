"""Data contracts: telemetry mapping, strict types, unknown fields kept, PRD envelope."""

from __future__ import annotations

import msgspec
import pytest

from app.contracts.common import DecodeError, decode
from app.contracts.events import DetectionEvent
from app.contracts.state import EntityState, new_state
from app.contracts.telemetry import mavlink_to_scopes, position_of, to_patch

NOW = "2026-01-01T00:00:00.000Z"


def test_ontology_payload_keeps_unknown_fields_and_scopes() -> None:
    patch, ts = to_patch(
        {
            "position": {"global": {"latitude": 1.5, "longitude": 2.5, "new_field": "x"}},
            "weather": {"wind": 3},
            "timestamp": "2026-02-02T00:00:00Z",
        },
        NOW,
    )
    assert ts == "2026-02-02T00:00:00Z"
    assert patch["position"]["global"]["new_field"] == "x"
    assert patch["extras"] == {"weather": {"wind": 3}}
    assert position_of(patch) == (1.5, 2.5, None)


@pytest.mark.parametrize(
    "payload",
    [
        {"position": {"global": {"latitude": "north"}}},
        {"power": {"battery_remaining": [1]}},
        {"vehicle_status": {"armed": "yes"}},
        {"position": "here"},
        {"detections": {"objects": {}}},
        {"status": "active"},
        {"timestamp": 5, "power": {}},
        {},
        {"message_type": "HEARTBEAT", "data": "x"},
        {"message_type": 7, "data": {}},
    ],
)
def test_invalid_types_are_rejected(payload: dict[str, object]) -> None:
    with pytest.raises(DecodeError):
        to_patch(payload, NOW)


def test_mavlink_units() -> None:
    gps = mavlink_to_scopes(
        "GPS_RAW_INT", {"lat": 374275000, "lon": -1221697000, "alt": 30500, "eph": 120, "satellites_visible": 12}, NOW
    )
    glob = gps["position"]["global"]
    assert glob["latitude"] == pytest.approx(37.4275) and glob["longitude"] == pytest.approx(-122.1697)
    assert glob["altitude_msl"] == pytest.approx(30.5) and glob["accuracy_h"] == pytest.approx(1.2)
    sys_status = mavlink_to_scopes(
        "SYS_STATUS", {"voltage_battery": 16100, "current_battery": 1250, "battery_remaining": 77}, NOW
    )
    assert sys_status["power"]["voltage"] == pytest.approx(16.1) and sys_status["power"]["current"] == pytest.approx(
        12.5
    )
    hb = mavlink_to_scopes("HEARTBEAT", {"custom_mode": 6, "base_mode": 217, "type": 2}, NOW)
    assert hb["vehicle_status"]["mode"] == "RTL" and hb["vehicle_status"]["armed"] is True
    other = mavlink_to_scopes("RC_CHANNELS", {"chan1_raw": 1500}, NOW)
    assert other == {"extras": {"last_RC_CHANNELS": {"chan1_raw": 1500}}}


def test_new_state_has_every_always_present_field_of_the_spec() -> None:
    doc = new_state("e1", "o1", "isr_sensor")
    for key in (
        "entity_id",
        "org_id",
        "device_id",
        "entity_type",
        "status",
        "is_live",
        "updated_at",
        "mission",
        "detections",
        "analytics",
    ):
        assert key in doc
    assert "c4isr" not in doc  # conditional
    msgspec.convert(doc, EntityState)


def test_detection_event_accepts_org_id_alias() -> None:
    body = {
        "timestamp": NOW,
        "event_type": "detection",
        "entity_id": "e1",
        "device_id": "d",
        "org_id": "o1",
        "detection": {
            "track_id": "t1",
            "model_type": "m",
            "label": "person",
            "confidence": 0.9,
            "bbox": {"x_min": 0.1, "y_min": 0.1, "x_max": 0.2, "y_max": 0.3},
            "timestamp": NOW,
            "metadata": {"threat_level": "LOW_THREAT", "custom": 1},
        },
    }
    event = decode(msgspec.json.encode(body), DetectionEvent)
    assert event.organization == "o1"
    body["organization_id"] = body.pop("org_id")
    assert decode(msgspec.json.encode(body), DetectionEvent).organization == "o1"
    assert event.detection is not None and event.detection.metadata["custom"] == 1
