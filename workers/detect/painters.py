"""Object painters for the synthetic scene: each draws one object into its own small patch.

A painter returns ``(patch, alpha)``: a BGR patch and a mask of the pixels the object
covers. Scenes composite patches back to front and keep an owner map, so ground truth
is the tight box around the *visible* pixels. Sizes are in pixels of the final frame.
Appearance is randomised (colours, proportions, pose) from the caller's generator so a
scene is a pure function of its seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

Rng = np.random.Generator
Patch = tuple[np.ndarray, np.ndarray]

CLASSES = ("person", "car", "truck", "drone", "bag", "weapon")
# (min, max) of the size that scenes draw each class at, log-uniformly.
SIZES = {
    "person": (28, 180),
    "car": (45, 230),
    "truck": (90, 320),
    "drone": (14, 70),
    "bag": (12, 55),
    "weapon": (28, 120),
}

SKIN = [(60, 90, 140), (80, 120, 180), (110, 150, 200), (140, 180, 225), (40, 60, 95)]
PAINT = [(30, 30, 200), (200, 60, 30), (220, 220, 220), (40, 40, 40), (30, 160, 200), (90, 90, 90), (40, 120, 40)]


def _colour(rng: Rng, base: tuple[int, int, int] | None = None, spread: int = 25) -> tuple[int, int, int]:
    if base is None:
        return tuple(int(c) for c in rng.integers(20, 236, 3))  # type: ignore[return-value]
    jitter = rng.integers(-spread, spread + 1, 3)
    return tuple(int(np.clip(b + j, 0, 255)) for b, j in zip(base, jitter, strict=True))  # type: ignore[return-value]


def _canvas(w: int, h: int) -> Patch:
    return np.zeros((h, w, 3), np.uint8), np.zeros((h, w), np.uint8)


def _poly(patch: Patch, points: np.ndarray, colour: tuple[int, int, int]) -> None:
    pts = np.round(points).astype(np.int32)
    cv2.fillPoly(patch[0], [pts], colour, cv2.LINE_AA)
    cv2.fillPoly(patch[1], [pts], 255)


def _rect(patch: Patch, x1: float, y1: float, x2: float, y2: float, colour: tuple[int, int, int]) -> None:
    _poly(patch, np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]]), colour)


def _circle(patch: Patch, cx: float, cy: float, r: float, colour: tuple[int, int, int], thick: int = -1) -> None:
    c, rr = (round(cx), round(cy)), max(1, round(r))
    cv2.circle(patch[0], c, rr, colour, thick, cv2.LINE_AA)
    cv2.circle(patch[1], c, rr, 255, thick)


def _line(patch: Patch, p: tuple[float, float], q: tuple[float, float], colour: tuple[int, int, int], t: float) -> None:
    a, b, w = (round(p[0]), round(p[1])), (round(q[0]), round(q[1])), max(1, round(t))
    cv2.line(patch[0], a, b, colour, w, cv2.LINE_AA)
    cv2.line(patch[1], a, b, 255, w)


def _ellipse(patch: Patch, cx: float, cy: float, ax: float, ay: float, colour: tuple[int, int, int]) -> None:
    c, axes = (round(cx), round(cy)), (max(1, round(ax)), max(1, round(ay)))
    cv2.ellipse(patch[0], c, axes, 0, 0, 360, colour, -1, cv2.LINE_AA)
    cv2.ellipse(patch[1], c, axes, 0, 0, 360, 255, -1)


def person(rng: Rng, size: float, phase: float | None = None) -> Patch:
    """A walking figure ``size`` px tall: head, hair or hat, torso, swinging arms and legs."""
    h = max(8.0, size)
    w = h * 0.55
    patch = _canvas(math.ceil(w) + 2, math.ceil(h) + 2)
    phase = rng.uniform(0, 2 * math.pi) if phase is None else phase
    skin, shirt, trousers = _colour(rng, SKIN[rng.integers(len(SKIN))], 15), _colour(rng), _colour(rng)
    cx = w / 2 + 1
    head_r = h * 0.075
    neck, hip, foot = h * 0.17, h * 0.55, h - 1
    limb = max(1.0, h * 0.07)
    swing = math.sin(phase) * 0.45
    for side in (-1, 1):  # legs behind the torso
        dx = side * swing * (foot - hip) * 0.5
        _line(patch, (cx + side * limb * 0.4, hip), (cx + dx, foot), trousers, limb * 1.2)
    _poly(
        patch, np.array([[cx - h * 0.11, neck], [cx + h * 0.11, neck], [cx + h * 0.1, hip], [cx - h * 0.1, hip]]), shirt
    )
    for side in (-1, 1):
        dx = -side * swing * h * 0.18
        shoulder = (cx + side * h * 0.1, neck + limb)
        _line(
            patch, shoulder, (cx + side * h * 0.14 + dx, neck + h * 0.33), shirt if rng.random() < 0.5 else skin, limb
        )
    _circle(patch, cx, head_r + 1, head_r, skin)
    if rng.random() < 0.5:  # hat brim + crown, else hair cap
        hat = _colour(rng)
        _rect(patch, cx - head_r * 1.4, head_r * 0.6, cx + head_r * 1.4, head_r * 0.9, hat)
        _rect(patch, cx - head_r * 0.9, 0, cx + head_r * 0.9, head_r * 0.7, hat)
    else:
        hair = _colour(rng, (30, 40, 60), 30)
        cv2.ellipse(patch[0], (round(cx), round(head_r + 1)), (round(head_r), round(head_r)), 0, 180, 360, hair, -1)
    return patch


def car(rng: Rng, size: float, top: bool | None = None) -> Patch:
    """A car ``size`` px long, side or top view."""
    length = max(10.0, size)
    body = _colour(rng, PAINT[rng.integers(len(PAINT))], 30)
    glass = _colour(rng, (90, 70, 50), 20)
    top = bool(rng.random() < 0.25) if top is None else top
    if top:
        w = length * rng.uniform(0.42, 0.5)
        patch = _canvas(math.ceil(length) + 2, math.ceil(w) + 2)
        _rect(patch, 1, 1, length, w, body)
        _rect(patch, length * 0.25, w * 0.15, length * 0.4, w * 0.85, glass)
        _rect(patch, length * 0.72, w * 0.18, length * 0.82, w * 0.82, glass)
        return patch
    h = length * rng.uniform(0.36, 0.44)
    patch = _canvas(math.ceil(length) + 2, math.ceil(h) + 2)
    wheel = h * 0.2
    _rect(patch, 1, h * 0.42, length, h - wheel * 0.9, body)
    cabin = np.array(
        [[length * 0.22, h * 0.44], [length * 0.32, h * 0.05], [length * 0.68, h * 0.05], [length * 0.8, h * 0.44]]
    )
    _poly(patch, cabin, body)
    _poly(
        patch,
        cabin * [1, 1]
        + [[length * 0.04, h * 0.04], [length * 0.03, h * 0.05], [-length * 0.03, h * 0.05], [-length * 0.05, h * 0.0]],
        glass,
    )
    for x in (length * 0.2, length * 0.8):
        _circle(patch, x, h - wheel - 1, wheel, (25, 25, 25))
        _circle(patch, x, h - wheel - 1, wheel * 0.45, (150, 150, 150))
    return patch


def truck(rng: Rng, size: float, top: bool | None = None) -> Patch:
    """A truck ``size`` px long: cargo box, cab, three wheels, optional stripe."""
    length = max(16.0, size)
    box, cab = _colour(rng, (200, 200, 200), 55), _colour(rng, PAINT[rng.integers(len(PAINT))], 30)
    top = bool(rng.random() < 0.2) if top is None else top
    if top:
        w = length * rng.uniform(0.3, 0.36)
        patch = _canvas(math.ceil(length) + 2, math.ceil(w) + 2)
        _rect(patch, 1, 1, length * 0.75, w, box)
        _rect(patch, length * 0.78, w * 0.08, length, w * 0.92, cab)
        return patch
    h = length * rng.uniform(0.42, 0.5)
    patch = _canvas(math.ceil(length) + 2, math.ceil(h) + 2)
    wheel = h * 0.13
    _rect(patch, 1, 1, length * 0.72, h - wheel * 1.6, box)
    if rng.random() < 0.5:
        _rect(patch, 1, h * 0.35, length * 0.72, h * 0.45, _colour(rng))
    _rect(patch, length * 0.74, h * 0.3, length, h - wheel * 1.6, cab)
    _rect(patch, length * 0.8, h * 0.36, length * 0.96, h * 0.5, (90, 70, 50))
    _rect(patch, 1, h - wheel * 1.7, length, h - wheel * 1.2, (40, 40, 40))
    for x in (length * 0.15, length * 0.55, length * 0.88):
        _circle(patch, x, h - wheel - 1, wheel, (25, 25, 25))
    return patch


def drone(rng: Rng, size: float, spin: float | None = None) -> Patch:
    """A quadcopter ``size`` px wide: X frame, four rotors, perspective squash, optional LED."""
    w = max(8.0, size)
    squash = rng.uniform(0.35, 1.0)
    h = w * squash
    patch = _canvas(math.ceil(w) + 2, math.ceil(h) + 2)
    frame = _colour(rng, (40, 40, 40), 30) if rng.random() < 0.7 else _colour(rng, (200, 200, 200), 30)
    r = w * 0.17
    cx, cy = w / 2 + 1, h / 2 + 1
    arms = [(r + 1, r * squash + 1), (w - r, r * squash + 1), (r + 1, h - r * squash), (w - r, h - r * squash)]
    for x, y in arms:
        _line(patch, (cx, cy), (x, y), frame, max(1.0, w * 0.06))
    ring = bool(rng.random() < 0.5)
    for x, y in arms:
        c, axes = (round(x), round(y)), (max(1, round(r)), max(1, round(r * squash)))
        t = -1 if not ring else max(1, round(w * 0.04))
        cv2.ellipse(patch[0], c, axes, 0, 0, 360, (60, 60, 60), t, cv2.LINE_AA)
        cv2.ellipse(patch[1], c, axes, 0, 0, 360, 255, t)
    _ellipse(patch, cx, cy, w * 0.12, w * 0.12 * squash, frame)
    if rng.random() < 0.5:
        _circle(patch, cx, cy, max(1.0, w * 0.04), (40, 40, 255) if rng.random() < 0.5 else (60, 255, 60))
    return patch


def bag(rng: Rng, size: float) -> Patch:
    """A bag ``size`` px wide: rounded body, handle, flap/pocket or zip."""
    w = max(6.0, size)
    h = w * rng.uniform(0.7, 1.1)
    patch = _canvas(math.ceil(w) + 2, math.ceil(h * 1.3) + 2)
    colour = _colour(rng, (40, 60, 90), 45) if rng.random() < 0.6 else _colour(rng)
    top = h * 0.3
    _rect(patch, 1 + w * 0.06, top, w - w * 0.06, top + h, colour)
    _ellipse(patch, w / 2 + 1, top + h * 0.05, w * 0.44, h * 0.12, colour)
    handle = (round(w / 2 + 1), round(top))
    axes = (max(1, round(w * 0.22)), max(1, round(h * 0.22)))
    cv2.ellipse(patch[0], handle, axes, 0, 180, 360, _colour(rng, colour, 20), max(1, round(w * 0.06)), cv2.LINE_AA)
    cv2.ellipse(patch[1], handle, axes, 0, 180, 360, 255, max(1, round(w * 0.06)))
    darker = tuple(int(c * 0.6) for c in colour)
    if rng.random() < 0.5:
        _rect(patch, w * 0.2, top + h * 0.5, w * 0.8, top + h * 0.85, darker)  # type: ignore[arg-type]
    else:
        _line(patch, (w * 0.12, top + h * 0.3), (w * 0.88, top + h * 0.3), darker, max(1.0, w * 0.04))  # type: ignore[arg-type]
    return patch


def weapon(rng: Rng, size: float, angle: float | None = None) -> Patch:
    """A rifle-like shape ``size`` px long: barrel, receiver, stock, grip, optional magazine, rotated ±50°."""
    length = max(12.0, size)
    t = length * rng.uniform(0.06, 0.09)  # receiver height
    dark = _colour(rng, (35, 35, 35), 20) if rng.random() < 0.8 else _colour(rng, (50, 80, 90), 20)
    parts = [
        np.array([[0.0, -t * 0.5], [length * 0.3, -t * 0.6], [length * 0.3, t * 0.5], [0.0, t * 1.1]]),  # stock
        np.array(
            [[length * 0.3, -t * 0.5], [length * 0.68, -t * 0.5], [length * 0.68, t * 0.5], [length * 0.3, t * 0.5]]
        ),
        np.array(
            [[length * 0.68, -t * 0.2], [length, -t * 0.2], [length, t * 0.12], [length * 0.68, t * 0.12]]
        ),  # barrel
        np.array(
            [[length * 0.36, t * 0.4], [length * 0.44, t * 0.4], [length * 0.41, t * 1.7], [length * 0.34, t * 1.6]]
        ),
    ]
    if rng.random() < 0.7:  # magazine
        parts.append(
            np.array(
                [[length * 0.5, t * 0.4], [length * 0.58, t * 0.4], [length * 0.6, t * 2.0], [length * 0.53, t * 2.1]]
            )
        )
    angle = rng.uniform(-50, 50) if angle is None else angle
    a = math.radians(angle)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    rotated = [p @ rot.T for p in parts]
    allp = np.concatenate(rotated)
    lo = allp.min(axis=0)
    size_xy = allp.max(axis=0) - lo
    patch = _canvas(math.ceil(size_xy[0]) + 3, math.ceil(size_xy[1]) + 3)
    for p in rotated:
        _poly(patch, p - lo + 1, dark)
    return patch


PAINTERS: dict[str, Callable[..., Patch]] = {
    "person": person,
    "car": car,
    "truck": truck,
    "drone": drone,
    "bag": bag,
    "weapon": weapon,
}
