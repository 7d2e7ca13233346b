"""Data contracts: telemetry mapping, strict types, unknown fields kept, PRD envelope."""

from __future__ import annotations

import msgspec
import pytest

from core.contracts.common import DecodeError, decode
from core.contracts.events import DetectionEvent
from core.contracts.registry import EntityRecord
from core.contracts.state import EntityState, conform, new_state, status_word, threat_distribution, violations
from core.contracts.telemetry import mavlink_to_scopes, position_of, to_patch

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
    # The PRD's list_entities and the KV spec's JavaScript read these on every entity.
    assert doc["analytics"]["summary"] == {
        "total_unique_objects": 0,
        "active_objects_count": 0,
        "total_frames_processed": 0,
    }
    assert doc["detections"]["objects"] == {} and doc["detections"]["timestamp"]
    assert set(doc["mission"]) == {"mode", "status", "started_at"}
    assert doc["status"] == "offline" and violations("e1", doc) == []


def test_conform_brings_an_old_value_to_the_spec_and_keeps_every_other_field() -> None:
    old = {
        "entity_id": "e1",
        "org_id": "o1",
        "entity_type": "aircraft_multirotor",
        "status": "inactive",
        "is_live": False,
        "updated_at": NOW,
        "mission": {},
        "detections": {"objects": {"t1": {"track_id": "t1", "label": "bag", "threat_level": "MEDIUM_THREAT"}}},
        "analytics": {"pipeline": {"fps": 9.5}, "c4isr_summary": {"threat_distribution": {"MEDIUM_THREAT": 1}}},
        "c4isr": {
            "threat_intelligence": {
                "threat_summary": {"alert_level": "ELEVATED", "threat_distribution": {"MEDIUM_THREAT": 1}},
                "threat_alerts": [{"track_id": "t1", "alert_type": "MEDIUM_THREAT", "reason": "bag"}],
            }
        },
        "position": {"global": {"latitude": 1.0}},
        "vendor_extra": {"kept": True},
    }
    doc = dict(old)
    assert violations("e1", doc)
    assert conform(doc, NOW)
    assert violations("e1", doc) == [], violations("e1", doc)
    assert doc["status"] == "offline" and doc["device_id"] == ""
    assert doc["detections"]["objects"]["t1"]["threat_level"] == "MODERATE_THREAT"
    assert doc["analytics"]["summary"] == {
        "total_unique_objects": 1,
        "active_objects_count": 1,
        "total_frames_processed": 0,
    }
    assert doc["analytics"]["pipeline"] == {"fps": 9.5}
    dist = {"LOW_THREAT": 0, "MODERATE_THREAT": 1, "HIGH_THREAT": 0}
    assert doc["analytics"]["c4isr_summary"]["threat_distribution"] == dist
    intel = doc["c4isr"]["threat_intelligence"]
    assert intel["threat_summary"]["threat_distribution"] == dist
    assert intel["threat_alerts"][0]["alert_type"] == "MODERATE_THREAT"
    assert doc["position"] == old["position"] and doc["vendor_extra"] == {"kept": True}
    # Nested objects of the original were replaced, never edited in place (StateStore's rule).
    assert old["detections"]["objects"]["t1"]["threat_level"] == "MEDIUM_THREAT"
    assert not conform(doc, NOW)  # idempotent: a conforming value is left alone


def test_the_seeds_words() -> None:
    assert status_word("inactive") == status_word("unknown") == status_word("maintenance") == "offline"
    assert status_word("error") == "error" and status_word(None, is_live=True) == "active"
    assert threat_distribution({"NORMAL": 2, "LOW_THREAT": 1, "HIGH_THREAT": 1, "bogus": 5}) == {
        "LOW_THREAT": 3,
        "MODERATE_THREAT": 0,
        "HIGH_THREAT": 1,
    }
    record = msgspec.convert(
        {
            "entity_id": "e",
            "org_id": "o",
            "entity_type": "waypoint",
            "status": "unknown",
            "created_at": NOW,
            "updated_at": NOW,
        },
        EntityRecord,
    )
    assert record.status == "offline"  # a registry record written before the seeds' words


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
