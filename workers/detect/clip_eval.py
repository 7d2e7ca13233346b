"""Score the worker's per-frame output on a real clip against a hand-made ground-truth file.

The frames go through the worker's own detection and tracking step (detector, tracker,
N-of-M persistence, per-class thresholds — ``DetectionWorker._track``), every frame in
order, as ``overwatch detect --every-frame`` processes a recording. Two figures:

* **recall** of people at least ``min_height`` px tall on the ground-truth frames: a
  person counts as found when a *published* track labelled ``person`` overlaps it at
  IoU ≥ 0.5;
* **false tracks**: published track ids that never overlap a ground-truth object of a
  compatible label (IoU ≥ 0.5 on some ground-truth frame) nor lie mostly inside an ignored
  region (the union of ``ignore`` boxes covers half of it or more) on the ground-truth
  frames it is alive on. A published track alive on no ground-truth frame cannot be
  judged; it is reported apart (``unchecked``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from core.contracts.common import utc_now
from workers.detect.boxes import iou_matrix
from workers.detect.sources import Frame
from workers.detect.worker import DetectionWorker

# Labels a detector may give an annotated object without being wrong about what it is.
COMPATIBLE = {
    "person": {"person"},
    "car": {"car", "truck", "bus"},
    "bicycle": {"bicycle", "motorcycle"},
    "motorcycle": {"motorcycle", "bicycle"},
}


@dataclass
class ClipScore:
    """What ``score_clip`` found."""

    frames: int = 0
    people: int = 0  # annotated people ≥ min_height
    people_found: int = 0
    tracks: dict[str, str] = field(default_factory=dict)  # published track id → label
    verified: set[str] = field(default_factory=set)
    false_tracks: list[str] = field(default_factory=list)  # alive on a ground-truth frame, matching nothing there
    unchecked: list[str] = field(default_factory=list)  # alive on no ground-truth frame: cannot be judged

    @property
    def recall(self) -> float:
        """Share of annotated people found."""
        return self.people_found / max(self.people, 1)

    def summary(self) -> dict[str, Any]:
        """Figures for reports and assertion messages."""
        return {
            "frames": self.frames,
            "people": self.people,
            "people_found": self.people_found,
            "recall": round(self.recall, 3),
            "published_tracks": len(self.tracks),
            "false_tracks": len(self.false_tracks),
            "false_labels": sorted(self.tracks[t] for t in self.false_tracks),
            "unchecked_tracks": len(self.unchecked),
            "unchecked_labels": sorted(self.tracks[t] for t in self.unchecked),
        }


def read_frames(path: Path) -> list[np.ndarray]:
    """Every frame of a video file."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()
    return frames


def score_clip(worker: DetectionWorker, clip: Path, truth_file: Path, min_height: float = 40.0) -> ClipScore:
    """Run every frame through ``worker``'s detection and tracking step; score against ``truth_file``."""
    truth = json.loads(truth_file.read_text())["frames"]
    score = ClipScore()
    alive_on_truth: dict[str, bool] = {}
    for index, image in enumerate(read_frames(clip)):
        det = worker.detector.detect(image)
        step = worker._track(Frame(image, index + 1, utc_now(), float(index), None), det)
        score.frames += 1
        annotated = truth.get(str(index))
        for track, label in zip(step.tracks, step.labels, strict=True):
            score.tracks.setdefault(track.track_id, label)
            alive_on_truth[track.track_id] = alive_on_truth.get(track.track_id, False) or annotated is not None
        if annotated is None:
            continue
        boxes = np.array([t.xyxy for t in step.tracks], np.float32).reshape(-1, 4)
        labels = step.labels
        objects = [a for a in annotated if a["label"] != "ignore"]
        ignore = np.array([a["box"] for a in annotated if a["label"] == "ignore"], np.float32).reshape(-1, 4)
        gt = np.array([a["box"] for a in objects], np.float32).reshape(-1, 4)
        overlaps = iou_matrix(gt, boxes)
        for i, obj in enumerate(objects):
            ok = [j for j in range(len(boxes)) if labels[j] in COMPATIBLE.get(obj["label"], {obj["label"]})]
            hit = [j for j in ok if overlaps[i, j] >= 0.5]
            for j in hit:
                score.verified.add(step.tracks[j].track_id)
            if obj["label"] == "person" and obj["box"][3] - obj["box"][1] >= min_height:
                score.people += 1
                score.people_found += any(labels[j] == "person" for j in hit)
        for j, track in enumerate(step.tracks):
            if len(ignore) and _inside(boxes[j], ignore, image.shape[:2]) >= 0.5:
                score.verified.add(track.track_id)
    score.false_tracks = [t for t in score.tracks if t not in score.verified and alive_on_truth[t]]
    score.unchecked = [t for t in score.tracks if not alive_on_truth[t]]
    return score


def _inside(box: np.ndarray, regions: np.ndarray, shape: tuple[int, ...]) -> float:
    """The share of ``box``'s area (within the frame) that the union of ``regions`` covers."""
    mask = np.zeros(shape[:2], bool)
    for x1, y1, x2, y2 in regions.round().astype(int):
        mask[max(y1, 0) : max(y2, 0), max(x1, 0) : max(x2, 0)] = True
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    inside = mask[max(y1, 0) : max(y2, 0), max(x1, 0) : max(x2, 0)]
    return float(inside.mean()) if inside.size else 0.0
