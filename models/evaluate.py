"""Evaluate an exported ONNX model end to end on held-out synthetic frames.

``python -m models.evaluate [--model models/detector.onnx] [--frames 300]``: renders
frames from a seed far from the training seeds (777777 on) at 640×480, runs the
deployment path (letterbox → onnxruntime → decode → NMS → un-letterbox, the worker's
own code) and reports per-class AP@0.5 and AP@0.75 (VOC all-point interpolation,
confidence > 0.001, at most 100 detections per frame), recall/precision at the display
threshold, and inference time. No torch needed.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workers.detect.boxes import iou_matrix
from workers.detect.model import DEFAULT_MODEL, Detector
from workers.detect.painters import CLASSES
from workers.detect.synth import noise_bank, render_scene

TEST_SEED = 777_777
DISPLAY_CONF = 0.3


@dataclass
class ClassStats:
    """Scored detections and ground-truth count of one class."""

    scores: list[float] = field(default_factory=list)
    hits50: list[bool] = field(default_factory=list)
    hits75: list[bool] = field(default_factory=list)
    truths: int = 0


def average_precision(scores: list[float], hits: list[bool], truths: int) -> float:
    """VOC all-point interpolated AP."""
    if truths == 0:
        return float("nan")
    if not scores:
        return 0.0
    order = np.argsort(-np.asarray(scores), kind="stable")
    tp = np.asarray(hits, np.float64)[order]
    fp = 1 - tp
    recall = np.cumsum(tp) / truths
    precision = np.cumsum(tp) / np.maximum(np.cumsum(tp) + np.cumsum(fp), 1e-9)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    idx = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def _match(pred: np.ndarray, scores: np.ndarray, truth: np.ndarray, threshold: float) -> list[bool]:
    """Greedy matching by score: each truth box matches at most one prediction."""
    hits = [False] * len(pred)
    if len(truth) == 0 or len(pred) == 0:
        return hits
    ious = iou_matrix(pred, truth)
    taken = np.zeros(len(truth), bool)
    for i in np.argsort(-scores, kind="stable"):
        j = int(np.argmax(np.where(taken, -1, ious[i])))
        if ious[i, j] >= threshold and not taken[j]:
            taken[j] = True
            hits[i] = True
    return hits


def evaluate(
    model: Path = DEFAULT_MODEL, frames: int = 300, seed: int = TEST_SEED, threads: int = 2
) -> dict[str, object]:
    """Per-class AP and mAP of ``model`` on ``frames`` held-out frames."""
    detector = Detector(model, conf=0.001, iou=0.5, threads=threads)
    stats = {c: ClassStats() for c in CLASSES}
    shown_tp = shown_fp = 0
    infer: list[float] = []
    bank = noise_bank(seed, 640, 480)
    for i in range(frames):
        frame = render_scene(seed + i, bank=bank)
        det = detector.detect(frame.image)
        infer.append(det.infer_ms)
        order = np.argsort(-det.scores, kind="stable")[:100]
        xyxy, scores, classes = det.xyxy[order], det.scores[order], det.classes[order]
        for name in CLASSES:
            truth = np.array([[t.x1, t.y1, t.x2, t.y2] for t in frame.truth if t.label == name], np.float32).reshape(
                -1, 4
            )
            mine = classes == detector.names.index(name) if name in detector.names else np.zeros(len(classes), bool)
            s = stats[name]
            s.truths += len(truth)
            s.scores += scores[mine].tolist()
            s.hits50 += _match(xyxy[mine], scores[mine], truth, 0.5)
            s.hits75 += _match(xyxy[mine], scores[mine], truth, 0.75)
            shown = scores[mine] > DISPLAY_CONF
            shown_hits = np.array(_match(xyxy[mine][shown], scores[mine][shown], truth, 0.5), bool)
            shown_tp += int(shown_hits.sum())
            shown_fp += int((~shown_hits).sum())
    per_class = {
        name: {
            "ap50": round(average_precision(s.scores, s.hits50, s.truths), 4),
            "ap75": round(average_precision(s.scores, s.hits75, s.truths), 4),
            "truths": s.truths,
        }
        for name, s in stats.items()
    }
    total_truths = sum(s.truths for s in stats.values())
    return {
        "model": str(model),
        "frames": frames,
        "seed": seed,
        "map50": round(float(np.nanmean([v["ap50"] for v in per_class.values()])), 4),
        "map75": round(float(np.nanmean([v["ap75"] for v in per_class.values()])), 4),
        "per_class": per_class,
        "recall_at_display": round(shown_tp / max(total_truths, 1), 4),
        "precision_at_display": round(shown_tp / max(shown_tp + shown_fp, 1), 4),
        "infer_ms_p50": round(float(np.percentile(infer, 50)), 2),
        "infer_ms_p90": round(float(np.percentile(infer, 90)), 2),
        "threads": threads,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    started = time.perf_counter()
    result = evaluate(args.model, args.frames, threads=args.threads)
    print(f"{'class':8s} {'AP@0.5':>7s} {'AP@0.75':>8s} {'boxes':>6s}")
    for name, v in result["per_class"].items():  # type: ignore[attr-defined]
        print(f"{name:8s} {v['ap50']:7.3f} {v['ap75']:8.3f} {v['truths']:6d}")
    print(f"{'mean':8s} {result['map50']:7.3f} {result['map75']:8.3f}")
    print(
        f"at conf > {DISPLAY_CONF}: recall {result['recall_at_display']}, precision {result['precision_at_display']}; "
        f"inference p50 {result['infer_ms_p50']} ms ({args.threads} threads); {time.perf_counter() - started:.0f} s"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
