"""Threat grading: table, indicators, alert level, alerts raised/escalated/cleared; objects leave when gone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from workers.detect import threats
from workers.detect.model import COCO_MODEL, Detector
from workers.detect.objects import ObjectBook
from workers.detect.tracker import Tracker


def test_default_table_matches_upstream_and_extends_it() -> None:
    t = threats.DEFAULT_TABLE
    assert t["weapon"] == t["knife"] == t["bomb"] == "HIGH_THREAT"
    assert t["truck"] == t["backpack"] == t["suspicious package"] == "MODERATE_THREAT"
    assert t["person"] == t["car"] == "LOW_THREAT"
    assert t["bench"] == "LOW_THREAT"  # the upstream NORMAL: the seeds know three levels only
    assert t["bag"] == t["drone"] == "MODERATE_THREAT"
    upstream = {
        *("weapon", "knife", "gun", "rifle", "pistol", "explosive", "bomb"),
        *("suspicious package", "unattended bag", "backpack", "suitcase", "unauthorized vehicle", "truck", "van"),
        *("person", "car", "bicycle", "motorcycle", "dog", "traffic light", "stop sign", "bench", "bird", "cat"),
    }
    assert len(upstream) == 24 and upstream <= set(t)
    assert set(t) == upstream | {"bag", "drone"} | set(threats.COCO_TABLE)
    assert set(t.values()) == {"LOW_THREAT", "MODERATE_THREAT", "HIGH_THREAT"}


def test_coco_labels_are_graded_in_the_seeds_words_and_coco_cannot_name_drones_or_guns() -> None:
    t = threats.DEFAULT_TABLE
    coco = list(Detector(COCO_MODEL, threads=1).names)
    assert len(coco) == 80
    # Weapon-like objects are HIGH, bags that may be left and large vehicles MODERATE, people and cars LOW.
    assert {t[k] for k in ("knife", "baseball bat", "scissors")} == {"HIGH_THREAT"}
    assert {t[k] for k in ("backpack", "handbag", "suitcase", "truck", "bus", "airplane")} == {"MODERATE_THREAT"}
    assert {t[k] for k in ("person", "car", "bicycle", "motorcycle", "bird", "kite")} == {"LOW_THREAT"}
    assert all(label in coco for label in threats.COCO_TABLE)
    # What the docs say plainly: the COCO model has no class for a drone or a firearm.
    assert not {"drone", "gun", "rifle", "pistol", "weapon"} & set(coco)


def test_operator_table(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"Drone": "HIGH_THREAT", "forklift": "LOW_THREAT"}))
    table = threats.load_table(path)
    assert table["drone"] == "HIGH_THREAT" and table["forklift"] == "LOW_THREAT" and table["weapon"] == "HIGH_THREAT"
    # The upstream client's words are accepted and stored as the seeds' ones.
    path.write_text(json.dumps({"van": "MEDIUM_THREAT", "bench": "NORMAL"}))
    table = threats.load_table(path)
    assert table["van"] == "MODERATE_THREAT" and table["bench"] == "LOW_THREAT"
    path.write_text(json.dumps({"drone": "SCARY"}))
    with pytest.raises(threats.ThreatTableError, match="SCARY"):
        threats.load_table(path)
    path.write_text("[1, 2]")
    with pytest.raises(threats.ThreatTableError, match="JSON object"):
        threats.load_table(path)


@pytest.mark.parametrize(
    ("level", "conf", "expected"),
    [
        ("HIGH_THREAT", 0.71, ["high_confidence_weapon_detection"]),
        ("HIGH_THREAT", 0.7, []),
        ("HIGH_THREAT", 0.5, []),
        ("HIGH_THREAT", 0.49, ["uncertain_threat_requires_validation"]),
        ("MODERATE_THREAT", 0.51, ["suspicious_object_detected"]),
        ("MODERATE_THREAT", 0.5, []),
        ("LOW_THREAT", 0.99, []),
    ],
)
def test_indicators(level: str, conf: float, expected: list[str]) -> None:
    assert threats.indicators(level, conf) == expected


def test_alert_level_has_three_steps() -> None:
    assert threats.alert_level(["LOW_THREAT", "HIGH_THREAT"]) == "HIGH"
    assert threats.alert_level(["MODERATE_THREAT", "LOW_THREAT"]) == "ELEVATED"
    assert threats.alert_level(["LOW_THREAT"]) == threats.alert_level([]) == "NORMAL"


def test_alerts_raise_escalate_and_clear_with_reasons() -> None:
    book = threats.ThreatBook()
    assert not book.observe("t1", "person", "LOW_THREAT", 0.9, "T0")
    assert book.observe("t1", "bag", "MODERATE_THREAT", 0.6, "T1")  # raised
    assert not book.observe("t1", "bag", "MODERATE_THREAT", 0.65, "T2")  # same level: no new alert
    assert book.observe("t1", "weapon", "HIGH_THREAT", 0.8, "T3")  # escalated
    [alert] = book.scope()
    assert alert["alert_type"] == "HIGH_THREAT" and alert["track_id"] == "t1"
    assert alert["reason"] == "High threat: weapon detected with high confidence (80%)"
    assert alert["first_detected"] == "T1"
    assert book.clear("t1") and not book.clear("t1")
    assert book.scope() == []


def test_lost_objects_leave_and_no_ghosts_remain() -> None:
    tracker = Tracker()
    book = ObjectBook(threats.DEFAULT_TABLE, lost_after=0.5)
    mono = 0.0
    for i in range(10):
        mono += 0.1
        tracks = tracker.update(
            np.array([[10 + i, 10, 50 + i, 90], [200, 50, 260, 70]], np.float32),
            np.array([0.9, 0.8], np.float32),
            np.array([0, 5]),
        )
        book.observe(tracks, ["person" if t.cls == 0 else "weapon" for t in tracks], 640, 480, f"T{i}", mono)
        book.sweep(mono, {t.track_id for t in tracker.removed})
    assert len(book.active()) == 2
    # Always the three levels, zeros included (the PRD's threat_distribution).
    assert book.analytics()["threat_distribution"] == {"LOW_THREAT": 1, "MODERATE_THREAT": 0, "HIGH_THREAT": 1}
    lost_all = []
    for _ in range(40):  # both objects leave the scene
        mono += 0.1
        tracker.update(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
        lost, _removed = book.sweep(mono, {t.track_id for t in tracker.removed})
        lost_all += lost
    assert len(lost_all) == 2
    assert book.active() == [] and book.objects == {}  # lost, then removed: nothing lingers
    stats = book.analytics()
    assert stats["active_objects_count"] == 0 and stats["total_unique_objects"] == 2
    assert stats["active_threat_count"] == 0
