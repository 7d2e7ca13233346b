"""Letterbox, decoding and NMS against hand-computed (golden) results."""

from __future__ import annotations

import numpy as np

from workers.detect.boxes import (
    PAD_VALUE,
    decode_end_to_end,
    decode_yolo,
    iou_matrix,
    letterbox,
    nms,
    to_tensor,
    unletterbox,
)


def test_letterbox_640x480_into_320_square() -> None:
    image = np.full((480, 640, 3), 200, np.uint8)
    padded, lb = letterbox(image, (320, 320))
    assert padded.shape == (320, 320, 3)
    assert (lb.gain, lb.pad_x, lb.pad_y, lb.width, lb.height) == (0.5, 0, 40, 640, 480)
    assert (padded[:40] == PAD_VALUE).all() and (padded[280:] == PAD_VALUE).all()
    assert (padded[40:280] == 200).all()


def test_letterbox_odd_sizes_round_like_yolov8() -> None:
    # 641×479 into 640: gain = 640/641, new = 640×478, dh = 81 → top round(80.9)=81, bottom round(81.1)=81.
    _, lb = letterbox(np.zeros((479, 641, 3), np.uint8), (640, 640))
    assert lb.pad_x == 0 and lb.pad_y == 81
    # 100×33 into 64: gain 0.64, new 64×21, dh = 21.5 → top round(21.4)=21, bottom round(21.6)=22.
    padded, lb = letterbox(np.zeros((33, 100, 3), np.uint8), (64, 64))
    assert padded.shape[:2] == (64, 64) and lb.pad_y == 21


def test_unletterbox_inverts_and_clips() -> None:
    _, lb = letterbox(np.zeros((480, 640, 3), np.uint8), (320, 320))
    boxes = np.array([[10, 50, 110, 90], [-5, 30, 400, 300]], np.float32)
    out = unletterbox(boxes, lb)
    np.testing.assert_allclose(out[0], [20, 20, 220, 100])
    np.testing.assert_allclose(out[1], [0, 0, 640, 480])  # clipped to the frame


def test_to_tensor_is_rgb_nchw_unit_range() -> None:
    bgr = np.zeros((2, 3, 3), np.uint8)
    bgr[..., 0] = 255  # blue
    t = to_tensor(bgr)
    assert t.shape == (1, 3, 2, 3) and t.dtype == np.float32
    assert (t[0, 2] == 1.0).all() and (t[0, 0] == 0.0).all()


def test_iou_golden() -> None:
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[5, 5, 15, 15], [0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    np.testing.assert_allclose(iou_matrix(a, b)[0], [25 / 175, 1.0, 0.0], rtol=1e-6)


def test_nms_keeps_best_and_is_class_aware() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    classes = np.array([0, 0, 1, 0])
    keep = nms(boxes, scores, classes, iou=0.5)
    # box 1 overlaps box 0 (IoU 0.68) of the same class: suppressed; box 2 is another class: kept.
    assert keep.tolist() == [0, 2, 3]
    # IoU 81/119 = 0.6807: kept when the threshold is above it.
    assert nms(boxes, scores, classes, iou=0.7).tolist() == [0, 1, 2, 3]
    assert nms(boxes, scores, classes, iou=0.68).tolist() == [0, 2, 3]
    assert nms(boxes, scores, np.zeros(4, int), iou=0.5).tolist() == [0, 3]


def test_decode_yolo_layout_threshold_is_strict() -> None:
    # 1 × (4 + 2 classes) × 3 candidates: (cx, cy, w, h, s0, s1).
    cands = np.array(
        [
            [50, 50, 20, 10, 0.9, 0.1],
            [51, 50, 20, 10, 0.3, 0.2],  # exactly at conf 0.3: dropped (strict >)
            [200, 100, 40, 40, 0.05, 0.6],
        ],
        np.float32,
    )
    xyxy, scores, classes = decode_yolo(cands.T[None], conf=0.3, iou=0.5)
    assert classes.tolist() == [0, 1]
    np.testing.assert_allclose(xyxy, [[40, 45, 60, 55], [180, 80, 220, 120]])
    np.testing.assert_allclose(scores, [0.9, 0.6])


def test_decode_end_to_end() -> None:
    out = np.array([[[1, 2, 3, 4, 0.9, 5], [5, 6, 7, 8, 0.2, 1]]], np.float32)
    xyxy, scores, classes = decode_end_to_end(out, conf=0.25)
    assert xyxy.tolist() == [[1, 2, 3, 4]] and classes.tolist() == [5]
