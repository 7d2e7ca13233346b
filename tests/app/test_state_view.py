"""The typed EntityState view: decoded once per change, robust against any device value."""

from __future__ import annotations

import math

from services.state_view import entity_view


def test_view_reads_the_spec_fields_and_the_merged_sub_keys() -> None:
    doc = {
        "name": "Hawk",
        "entity_type": "aircraft_multirotor",
        "status": "active",
        "is_live": True,
        "last_seen": "2026-11-26T05:00:00Z",
        "position": {"global": {"latitude": 37.5, "longitude": -122.25, "altitude_msl": 120, "altitude_relative": 40}},
        "attitude": {"euler": {"yaw": math.pi / 2}},
        "vfr": {"groundspeed": 12.5},
        "power": {"battery_remaining": 77, "voltage": 15.1},
        "vehicle_status": {"mode": "AUTO", "armed": True},
        "detections": {"objects": {"t1": {"label": "person", "threat_level": "HIGH_THREAT", "confidence": 0.9,
                                          "bbox": {"x1": 1, "y1": 2, "x2": 11, "y2": 22},
                                          "geo": {"latitude": 37.6, "longitude": -122.2}}}},
        "c4isr": {
            "threat_intelligence": {
                "threat_summary": {"alert_level": "HIGH", "total_threats": 2},
                "threat_alerts": [{"alert_type": "HIGH_THREAT", "reason": "person at gate"}],
            }
        },
        "commands": {"recent": [{"command": "takeoff", "status": "acked"}]},
    }
    view = entity_view("e1", "org", doc, revision=9)
    assert (view.entity_id, view.org_id, view.revision, view.name) == ("e1", "org", 9, "Hawk")
    assert view.is_live and view.last_seen_s is not None and view.last_seen_ms == int(view.last_seen_s * 1000)
    assert (view.latitude, view.longitude, view.altitude) == (37.5, -122.25, 40.0)
    assert view.heading is not None and abs(view.heading - 90.0) < 1e-9 and view.course is None
    assert (view.battery, view.voltage, view.mode, view.armed) == (77.0, 15.1, "AUTO", True)
    (obj,) = view.objects
    assert (obj.track_id, obj.label, obj.threat_level, obj.latitude) == ("t1", "person", "HIGH_THREAT", 37.6)
    assert obj.box is not None and (obj.box.x_max - obj.box.x_min, obj.box.y_max - obj.box.y_min) == (10.0, 20.0)
    assert view.alert_level == "HIGH" and view.threat_alerts[0].reason == "person at gate"
    assert (view.last_command, view.last_command_status) == ("takeoff", "acked")
    assert view.doc is doc


def test_hostile_values_read_as_missing_never_raise() -> None:
    doc = {
        "name": ["not", "a", "name"],
        "is_live": "yes",
        "last_seen": 12,
        "position": {"global": {"latitude": float("nan"), "longitude": float("inf")}},
        "power": {"battery_remaining": True},
        "vfr": "fast",
        "vehicle_status": {"armed": "sure"},
        "detections": {"objects": {"x": "not an object", "y": {"bbox": {"x1": "a"}}}},
        "c4isr": {"threat_intelligence": {"threat_alerts": "many"}},
        "commands": {"recent": "none"},
    }
    view = entity_view("e2", "org", doc)
    assert view.name == "e2" and not view.is_live and view.last_seen_s is None
    assert view.latitude is None and view.longitude is None and view.battery is None and view.speed is None
    assert view.armed is None and view.threat_alerts == () and view.last_command == ""
    assert [o.track_id for o in view.objects] == ["x", "y"] and all(o.box is None for o in view.objects)
