"""The model loader with both operator layouts, and an accuracy floor for the shipped model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.evaluate import evaluate
from workers.detect.model import DEFAULT_MODEL, Detector, ModelError
from workers.detect.painters import CLASSES

DATA = Path(__file__).resolve().parents[2] / "data"
REPO = Path(__file__).resolve().parents[3]


def test_yolo_layout_decodes_nms_and_maps_back_through_the_letterbox(tmp_path: Path) -> None:
    detector = Detector(DATA / "yolo_layout.onnx", conf=0.3, iou=0.5, threads=1)
    assert detector.names == ["alpha", "bravo"] and detector.size == (64, 64) and not detector.end_to_end
    square = detector.detect(np.zeros((128, 128, 3), np.uint8))
    # Two overlapping "alpha" candidates → the stronger one; "bravo" kept; the weak one dropped.
    assert square.xyxy.tolist() == [[0, 16, 64, 52], [64, 64, 96, 96]]
    assert square.scores.tolist() == pytest.approx([0.9, 0.7]) and square.classes.tolist() == [0, 1]
    wide = detector.detect(np.zeros((96, 128, 3), np.uint8))  # padded 8 px top and bottom in the input
    assert wide.xyxy.tolist() == [[0, 0, 64, 36], [64, 48, 96, 80]]


def test_labels_file_beats_metadata_and_must_cover_every_class(tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("# comment\nperson\n\nweapon\n")
    assert Detector(DATA / "yolo_layout.onnx", labels, threads=1).names == ["person", "weapon"]
    labels.write_text("person\n")
    with pytest.raises(ModelError, match="predicts 2 classes but labels file .* names only 1"):
        Detector(DATA / "yolo_layout.onnx", labels, threads=1)


def test_end_to_end_layout_is_taken_as_given() -> None:
    detector = Detector(DATA / "end_to_end.onnx", conf=0.3, threads=1)
    assert detector.end_to_end and detector.info()["layout"] == "end_to_end"
    found = detector.detect(np.zeros((128, 128, 3), np.uint8))
    assert found.xyxy.tolist() == [[16, 48, 48, 80], [80, 48, 112, 80]]
    assert found.classes.tolist() == [1, 0] and detector.label(1) == "class_1"


def test_not_a_model_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot load"):
        Detector(junk)
    with pytest.raises(ModelError, match="not found"):
        Detector(tmp_path / "missing.onnx")


def test_shipped_model_files_are_committed_small_and_consistent() -> None:
    assert DEFAULT_MODEL.is_file() and DEFAULT_MODEL.stat().st_size <= 10 * 1024 * 1024
    labels = (REPO / "models" / "labels.txt").read_text().split()
    detector = Detector(DEFAULT_MODEL, REPO / "models" / "labels.txt", threads=1)
    assert labels == list(CLASSES) == detector.names
    assert Detector(DEFAULT_MODEL, threads=1).names == list(CLASSES)  # metadata agrees with the labels file


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_shipped_model_accuracy_floor() -> None:
    # 80 held-out frames (seeds never used in training); models/README.md reports 300.
    result = evaluate(frames=80, threads=2)
    assert result["map50"] >= 0.85, result
    per_class = result["per_class"]
    assert isinstance(per_class, dict)
    assert all(row["ap50"] >= 0.7 for row in per_class.values()), per_class
