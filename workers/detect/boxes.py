"""Letterbox, output decoding and NMS: pure numpy, the same code for deployment and evaluation.

Conventions follow the YOLOv8 family so operator-supplied models work unchanged:
letterbox with pad value 114 and ``round(d ± 0.1)`` padding, RGB, 0–1, NCHW; outputs
``1×(4+nc)×N`` (cx, cy, w, h in input pixels, then class scores) or end-to-end
``1×N×6`` (x1, y1, x2, y2, score, class).
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

PAD_VALUE = 114
MAX_CANDIDATES = 1000  # cap before NMS: numpy NMS cost grows with the square of this


class Letterbox(NamedTuple):
    """How a frame was fitted into the model input: scale and padding."""

    gain: float
    pad_x: int
    pad_y: int
    width: int
    height: int


def letterbox(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping aspect, pad to ``size`` (w, h); return the padded BGR image and the mapping."""
    h0, w0 = image.shape[:2]
    tw, th = size
    gain = min(tw / w0, th / h0)
    nw, nh = round(w0 * gain), round(h0 * gain)
    dw, dh = (tw - nw) / 2, (th - nh) / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nw, nh) != (w0, h0) else image
    padded = cv2.copyMakeBorder(resized, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    return padded, Letterbox(gain, left, top, w0, h0)


def to_tensor(padded_bgr: np.ndarray) -> np.ndarray:
    """BGR HWC uint8 → RGB NCHW float32 in 0–1."""
    rgb = cv2.cvtColor(padded_bgr, cv2.COLOR_BGR2RGB)
    out = np.empty((1, 3, *rgb.shape[:2]), np.float32)
    np.multiply(rgb.transpose(2, 0, 1), np.float32(1 / 255), out=out[0], casting="unsafe")
    return out


def unletterbox(xyxy: np.ndarray, lb: Letterbox) -> np.ndarray:
    """Input-pixel boxes → frame pixels, clipped to the frame."""
    out = xyxy.astype(np.float32, copy=True)
    out[:, [0, 2]] = (out[:, [0, 2]] - lb.pad_x) / lb.gain
    out[:, [1, 3]] = (out[:, [1, 3]] - lb.pad_y) / lb.gain
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, lb.width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, lb.height)
    return out


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes (``len(a)`` × ``len(b)``)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = (x2 - x1).clip(0) * (y2 - y1).clip(0)
    area_a = (a[:, 2] - a[:, 0]).clip(0) * (a[:, 3] - a[:, 1]).clip(0)
    area_b = (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0).astype(np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float, max_det: int = 300) -> np.ndarray:
    """Class-aware greedy NMS; indices kept, best first."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    offset = boxes + (classes.astype(np.float32) * 7680.0)[:, None]  # boxes of different classes never overlap
    order = np.argsort(-scores, kind="stable")
    # One IoU matrix for all candidates (≤ MAX_CANDIDATES), then a cheap greedy pass over it.
    overlaps = iou_matrix(offset[order], offset[order]) > iou
    suppressed = np.zeros(len(order), dtype=bool)
    keep: list[int] = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(int(order[i]))
        if len(keep) >= max_det:
            break
        suppressed |= overlaps[i]
    return np.array(keep, np.int64)


def decode_yolo(output: np.ndarray, conf: float, iou: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``1×(4+nc)×N`` → (xyxy in input pixels, scores, classes) after NMS; scores strictly > ``conf``."""
    pred = output[0]  # (4+nc) × N: select candidates first, transpose only those
    best = pred[4:].max(axis=0)
    idx = np.nonzero(best > conf)[0]
    if len(idx) > MAX_CANDIDATES:
        idx = idx[np.argpartition(-best[idx], MAX_CANDIDATES)[:MAX_CANDIDATES]]
    cand = pred[:, idx]
    classes = cand[4:].argmax(axis=0)
    scores = best[idx]
    cx, cy, w, h = cand[0], cand[1], cand[2], cand[3]
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    keep = nms(xyxy, scores, classes, iou)
    return xyxy[keep], scores[keep], classes[keep]


def decode_end_to_end(output: np.ndarray, conf: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``1×N×6`` (x1, y1, x2, y2, score, class) → the rows with score strictly > ``conf``."""
    pred = output[0]
    mask = pred[:, 4] > conf
    pred = pred[mask]
    return pred[:, :4].astype(np.float32), pred[:, 4].astype(np.float32), pred[:, 5].astype(np.int64)
