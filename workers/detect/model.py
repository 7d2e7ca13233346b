"""The ONNX detector: loads the shipped model or an operator's YOLOv8/YOLO11-style one.

Output layouts understood: ``1×(4+nc)×N`` (YOLOv8/YOLO11 and the shipped model; decoded
with class-aware NMS) and ``1×N×6`` end-to-end (already suppressed). Class names come
from a labels file (one per line), else the model's ``names`` metadata (the dict that
Ultralytics writes), else ``class_{i}``.
"""

from __future__ import annotations

import ast
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from workers.detect.boxes import decode_end_to_end, decode_yolo, letterbox, to_tensor, unletterbox

MODELS_DIR = Path(__file__).resolve().parent.parent.parent / "models"
DEFAULT_MODEL = MODELS_DIR / "detector.onnx"  # ours, trained on the synthetic scene only
COCO_MODEL = MODELS_DIR / "coco" / "nanodet-g-coco.onnx"  # NanoDet-g, COCO-80 (models/coco/SOURCE.json)
DEFAULT_CONF = 0.3  # publish threshold of a model that does not recommend its own
# Per-class thresholds a shipped model starts with (DETECT_CLASS_CONF overrides them): street
# furniture and indoor objects the COCO model sees in real footage that is not there — a bollard
# as a fire hydrant, a car seat as a chair or couch (docs/detection.md).
RECOMMENDED_CLASS_CONF: dict[str, dict[str, float]] = {
    "nanodet-g-coco": {"fire hydrant": 0.6, "parking meter": 0.6, "chair": 0.5, "couch": 0.5, "toothbrush": 0.6},
}


def model_for_source(kind: str) -> Path:
    """The shipped model for a source kind: the synthetic scene's own model for it, COCO for real video."""
    return DEFAULT_MODEL if kind == "synthetic" else COCO_MODEL


class ModelError(Exception):
    """The model file cannot be used (missing, unreadable, unknown output layout)."""


@dataclass(frozen=True)
class Detections:
    """One frame's detections in frame pixels."""

    xyxy: np.ndarray  # n × 4 float32
    scores: np.ndarray  # n float32
    classes: np.ndarray  # n int64
    infer_ms: float

    def __len__(self) -> int:
        return len(self.scores)


def _names_from_metadata(meta: dict[str, str]) -> list[str] | None:
    raw = meta.get("names")
    if not raw:
        return None
    try:
        parsed = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return None
    if isinstance(parsed, dict):
        return [str(parsed[k]) for k in sorted(parsed)]
    if isinstance(parsed, list | tuple):
        return [str(v) for v in parsed]
    return None


def read_labels(path: Path) -> list[str]:
    """Class names from a labels file: one per line, blank lines and ``#`` comments skipped."""
    lines = [ln.strip() for ln in path.read_text().splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


class Detector:
    """An onnxruntime session with its pre- and post-processing."""

    def __init__(
        self,
        path: Path = DEFAULT_MODEL,
        labels: Path | None = None,
        conf: float = 0.3,
        iou: float = 0.5,
        threads: int = 2,
    ) -> None:
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # No busy-waiting between ops: the pipeline's other threads (capture, tracking,
        # JPEG encoding, the event loop) need those cores more than ORT needs the latency.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(f"cannot load {path}: {exc}") from exc
        self.path, self.conf, self.iou = path, conf, iou
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        h, w = inp.shape[2], inp.shape[3]
        if not isinstance(h, int) or not isinstance(w, int):  # dynamic axes: take imgsz metadata or 640
            size = ast.literal_eval(meta["imgsz"]) if "imgsz" in meta else [640, 640]
            h, w = int(size[0]), int(size[1])
        self.size = (int(w), int(h))
        out_shape = self.session.get_outputs()[0].shape
        self.end_to_end = len(out_shape) == 3 and out_shape[2] == 6
        names = read_labels(labels) if labels else None
        names = names or _names_from_metadata(meta)
        n_classes = None if self.end_to_end or not isinstance(out_shape[1], int) else out_shape[1] - 4
        if names is None:
            names = [f"class_{i}" for i in range(n_classes or 0)]
        if n_classes is not None and len(names) < n_classes:
            source = f"labels file {labels}" if labels else "the model's names metadata"
            raise ModelError(f"{path} predicts {n_classes} classes but {source} names only {len(names)}")
        self.names = names
        self.model_type = meta.get("model_type") or path.stem
        try:
            recommended = float(meta.get("conf", DEFAULT_CONF))
        except ValueError:
            recommended = DEFAULT_CONF
        # The publish threshold the model's maker recommends (metadata ``conf``); DETECT_CONF overrides it.
        self.recommended_conf = recommended if 0.0 < recommended < 1.0 else DEFAULT_CONF

    def infer_raw(self, tensor: np.ndarray) -> np.ndarray:
        """Run the session on a prepared NCHW tensor; the first output."""
        return np.asarray(self.session.run(None, {self.input_name: tensor})[0])

    def detect(self, frame: np.ndarray) -> Detections:
        """Letterbox, infer, decode and map back to frame pixels."""
        padded, lb = letterbox(frame, self.size)
        started = time.perf_counter()
        output = self.infer_raw(to_tensor(padded))
        infer_ms = (time.perf_counter() - started) * 1000
        if self.end_to_end:
            xyxy, scores, classes = decode_end_to_end(output, self.conf)
        else:
            xyxy, scores, classes = decode_yolo(output, self.conf, self.iou)
        return Detections(unletterbox(xyxy, lb), scores, classes, infer_ms)

    def label(self, cls: int) -> str:
        """The class name of a class index."""
        return self.names[cls] if 0 <= cls < len(self.names) else f"class_{cls}"

    def info(self) -> dict[str, Any]:
        """What the bootsequence event reports about the model."""
        return {
            "model": self.path.name,
            "model_type": self.model_type,
            "input": list(self.size),
            "classes": len(self.names),
            "layout": "end_to_end" if self.end_to_end else "yolo",
        }
