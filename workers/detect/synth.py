"""Procedural synthetic scenes with ground truth: training data, the demo camera, test input.

Two modes share one compositor. :func:`render_scene` draws an independent frame
(background, clutter, 1–8 objects, occluders, photometric effects, JPEG) — the training
and evaluation data. ``workers.detect.video_scene.VideoScene`` keeps its background and
moves actors across it — the ``synthetic`` video source.

Ground truth is the tight box around each object's *visible* pixels (an owner map
records who painted each pixel); objects less than 35 % visible or under 4 px are
dropped. Everything is a pure function of the seed: no global random state, and noise
comes from a seeded bank rather than ``cv2.randn`` (which has its own generator).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

from workers.detect.painters import CLASSES, PAINTERS, SIZES, Patch

MIN_VISIBLE = 0.35
MIN_BOX = 4


class Truth(NamedTuple):
    """A ground-truth box in frame pixels."""

    label: str
    x1: float
    y1: float
    x2: float
    y2: float


class SynthFrame(NamedTuple):
    """A rendered BGR frame and its ground truth."""

    image: np.ndarray
    truth: list[Truth]


@dataclass
class Placed:
    """A patch at a frame position (top-left), with the label it carries (``""`` = clutter)."""

    patch: Patch
    x: int
    y: int
    label: str = ""


# ------------------------------------------------------------------ backgrounds


def _gradient(h: int, w: int, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    column = np.linspace(top, bottom, max(h, 1), dtype=np.float32)[:, None, :]
    return np.ascontiguousarray(np.broadcast_to(column, (h, w, 3)))


def _low_noise(rng: np.random.Generator, h: int, w: int, cells: tuple[int, int], amp: float) -> np.ndarray:
    small = rng.normal(0, amp, (cells[0], cells[1], 3)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def ground_background(rng: np.random.Generator, w: int, h: int, horizon: int | None = None) -> tuple[np.ndarray, int]:
    """Sky, ground and maybe a road; ``horizon`` (row) is drawn at random unless given (a posed camera's)."""
    drawn = int(h * rng.uniform(0.25, 0.6))  # drawn either way: the same seed gives the same scene
    horizon = drawn if horizon is None else horizon
    overcast = rng.random() < 0.3
    sky_top = np.array([200, 170, 130] if not overcast else [170, 170, 165], np.float32) + rng.uniform(-40, 40, 3)
    sky_low = sky_top + rng.uniform(10, 60, 3)
    ground_far = np.array(rng.choice([[90, 130, 110], [80, 110, 130], [110, 115, 115], [70, 120, 90]]), np.float32)
    ground_far += rng.uniform(-30, 30, 3)
    ground_near = ground_far * rng.uniform(0.6, 1.1)
    img = np.empty((h, w, 3), np.float32)
    img[:horizon] = _gradient(horizon, w, sky_top, sky_low)
    img[horizon:] = _gradient(h - horizon, w, ground_far, ground_near)
    img += _low_noise(rng, h, w, (4, 5), 14) + _low_noise(rng, h, w, (18, 24), 7)
    out = np.clip(img, 0, 255).astype(np.uint8)
    if rng.random() < 0.6:  # a road to the vanishing point, with lane marks
        vx = rng.uniform(0.2, 0.8) * w
        half = rng.uniform(0.25, 0.7) * w
        road = np.array([[vx - 4, horizon], [vx + 4, horizon], [vx + half, h], [vx - half, h]], np.int32)
        grey = int(rng.integers(60, 120))
        cv2.fillPoly(out, [road], (grey, grey, grey + 5), cv2.LINE_AA)
        mark = (230, 230, 230) if rng.random() < 0.6 else (40, 200, 230)
        for i in range(8):
            t0, t1 = (i + 0.2) / 8, (i + 0.6) / 8
            y0, y1 = horizon + (h - horizon) * t0**2, horizon + (h - horizon) * t1**2
            cv2.line(out, (round(vx), round(y0)), (round(vx), round(y1)), mark, max(1, round(6 * t1)), cv2.LINE_AA)
    return out, horizon


def _aerial_background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    base = np.array(rng.choice([[70, 120, 90], [90, 120, 120], [110, 120, 115]]), np.float32) + rng.uniform(-25, 25, 3)
    img = np.full((h, w, 3), base, np.float32)
    img += _low_noise(rng, h, w, (5, 6), 18) + _low_noise(rng, h, w, (30, 40), 8)
    out = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(0, 3))):
        grey = int(rng.integers(70, 130))
        if rng.random() < 0.5:
            y = int(rng.integers(0, h))
            cv2.line(out, (0, y), (w, y + int(rng.integers(-80, 80))), (grey, grey, grey), int(rng.integers(30, 70)))
        else:
            x = int(rng.integers(0, w))
            cv2.line(out, (x, 0), (x + int(rng.integers(-80, 80)), h), (grey, grey, grey), int(rng.integers(30, 70)))
    for _ in range(int(rng.integers(0, 5))):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        bw, bh = int(rng.integers(40, 140)), int(rng.integers(40, 140))
        roof = tuple(int(c) for c in rng.integers(60, 200, 3))
        cv2.rectangle(out, (x, y), (x + bw, y + bh), roof, -1)
        cv2.rectangle(out, (x, y), (x + bw, y + bh), tuple(int(c * 0.6) for c in roof), 2)
    for _ in range(int(rng.integers(0, 10))):
        x, y, r = int(rng.integers(0, w)), int(rng.integers(0, h)), int(rng.integers(8, 30))
        cv2.circle(out, (x, y), r, (40, int(rng.integers(80, 120)), 50), -1, cv2.LINE_AA)
    return out


def clutter(rng: np.random.Generator, img: np.ndarray, horizon: int) -> None:
    """Buildings, trees, poles, rocks, crates and fences painted into the background."""
    h, w = img.shape[:2]
    for _ in range(int(rng.integers(2, 12))):
        kind = rng.choice(["building", "tree", "pole", "rock", "crate", "fence"], p=[0.2, 0.25, 0.15, 0.15, 0.15, 0.1])
        x = int(rng.integers(-20, w))
        if kind == "building":
            bw, bh = int(rng.integers(40, 200)), int(rng.integers(30, 160))
            base = horizon + int(rng.integers(0, 15))
            colour = tuple(int(c) for c in rng.integers(70, 200, 3))
            cv2.rectangle(img, (x, base - bh), (x + bw, base), colour, -1)
            win = tuple(int(c * rng.uniform(0.4, 0.7)) for c in colour)
            step = int(rng.integers(10, 22))
            for wx in range(x + 5, x + bw - 8, step):
                for wy in range(base - bh + 5, base - 10, step):
                    cv2.rectangle(img, (wx, wy), (wx + step // 2, wy + step // 2), win, -1)
        elif kind == "tree":
            s = int(rng.integers(20, 120))
            base = horizon + int(rng.integers(0, max(1, (h - horizon) // 2)))
            cv2.rectangle(img, (x, base - s), (x + max(2, s // 10), base), (40, 60, 90), -1)
            green = (int(rng.integers(30, 70)), int(rng.integers(90, 150)), int(rng.integers(40, 80)))
            cv2.circle(img, (x + s // 20, base - s), max(4, s // 3), green, -1, cv2.LINE_AA)
        elif kind == "pole":
            base = horizon + int(rng.integers(0, max(1, h - horizon)))
            s = int(rng.integers(30, 200))
            cv2.rectangle(img, (x, base - s), (x + int(rng.integers(2, 6)), base), (70, 70, 75), -1)
        elif kind == "rock":
            y = int(rng.integers(horizon, h))
            grey = int(rng.integers(80, 150))
            axes = (int(rng.integers(5, 40)), int(rng.integers(4, 20)))
            cv2.ellipse(img, (x, y), axes, 0, 0, 360, (grey, grey, grey + 10), -1, cv2.LINE_AA)
        elif kind == "crate":
            y, s = int(rng.integers(horizon, h)), int(rng.integers(10, 50))
            wood = (int(rng.integers(40, 80)), int(rng.integers(90, 140)), int(rng.integers(130, 180)))
            cv2.rectangle(img, (x, y - s), (x + s, y), wood, -1)
            cv2.line(img, (x, y - s), (x + s, y), tuple(int(c * 0.6) for c in wood), 2)
        else:
            y = int(rng.integers(horizon, h))
            length, tall = int(rng.integers(60, 300)), int(rng.integers(10, 40))
            for rail in (0.3, 0.7):
                cv2.line(img, (x, int(y - tall * rail)), (x + length, int(y - tall * rail)), (90, 110, 120), 2)
            for px in range(x, x + length, 25):
                cv2.line(img, (px, y), (px, y - tall), (70, 90, 100), 3)


def occluders(rng: np.random.Generator, w: int, h: int, horizon: int) -> list[Placed]:
    """Foreground posts, bushes and rails, drawn over objects."""
    out: list[Placed] = []
    for _ in range(int(rng.integers(0, 4)) if rng.random() < 0.5 else 0):
        kind = rng.choice(["post", "bush", "rail"])
        if kind == "post":
            pw, ph = int(rng.integers(6, 20)), int(rng.integers(60, h))
            canvas = np.zeros((ph, pw, 3), np.uint8), np.full((ph, pw), 255, np.uint8)
            canvas[0][:] = (60, 70, 80)
            out.append(Placed(canvas, int(rng.integers(0, w)), h - ph))
        elif kind == "bush":
            bw, bh = int(rng.integers(30, 120)), int(rng.integers(20, 70))
            patch = np.zeros((bh, bw, 3), np.uint8), np.zeros((bh, bw), np.uint8)
            green = (int(rng.integers(20, 60)), int(rng.integers(80, 140)), int(rng.integers(30, 70)))
            for _ in range(6):
                c = (int(rng.integers(0, bw)), int(rng.integers(bh // 3, bh)))
                r = int(rng.integers(max(4, bh // 4), max(5, bh // 2)))
                cv2.circle(patch[0], c, r, green, -1)
                cv2.circle(patch[1], c, r, 255, -1)
            out.append(Placed(patch, int(rng.integers(-20, w)), int(rng.integers(horizon, h)) - bh))
        else:
            rw, rh = int(rng.integers(80, w)), int(rng.integers(3, 8))
            patch = np.full((rh, rw, 3), (80, 95, 110), np.uint8), np.full((rh, rw), 255, np.uint8)
            out.append(Placed(patch, int(rng.integers(-40, w)), int(rng.integers(horizon, h))))
    return out


# ------------------------------------------------------------------ compositing


def lit(rng: np.random.Generator, patch: np.ndarray) -> np.ndarray:
    """A random linear lighting gradient across the patch."""
    h, w = patch.shape[:2]
    a = rng.uniform(0, 2 * math.pi)
    lo, hi = rng.uniform(0.65, 0.95), rng.uniform(1.0, 1.3)
    ramp = np.linspace(lo, hi, 16, dtype=np.float32)
    xs = np.linspace(0, 1, w, dtype=np.float32) * math.cos(a)
    ys = np.linspace(0, 1, h, dtype=np.float32) * math.sin(a)
    t = ys[:, None] + xs[None, :]
    t = (t - t.min()) / max(1e-6, float(np.ptp(t)))
    gain = np.interp(t, np.linspace(0, 1, 16), ramp).astype(np.float32)
    lit: np.ndarray = np.clip(patch.astype(np.float32) * gain[..., None], 0, 255).astype(np.uint8)
    return lit


def composite(image: np.ndarray, owner: np.ndarray, items: list[Placed]) -> list[Truth]:
    """Paint items in order; return the visible boxes of labelled ones."""
    h, w = image.shape[:2]
    spans: list[tuple[int, str, int, int, int, int, int]] = []
    for idx, item in enumerate(items, start=1):
        patch, alpha = item.patch
        ph, pw = alpha.shape
        x0, y0 = max(item.x, 0), max(item.y, 0)
        x1, y1 = min(item.x + pw, w), min(item.y + ph, h)
        if x1 <= x0 or y1 <= y0:
            continue
        sub_a = alpha[y0 - item.y : y1 - item.y, x0 - item.x : x1 - item.x] > 0
        sub_p = patch[y0 - item.y : y1 - item.y, x0 - item.x : x1 - item.x]
        np.copyto(image[y0:y1, x0:x1], sub_p, where=sub_a[..., None])
        owner[y0:y1, x0:x1][sub_a] = idx if item.label else 0
        if item.label:
            spans.append((idx, item.label, x0, y0, x1, y1, int(np.count_nonzero(alpha))))
    truth: list[Truth] = []
    for idx, label, x0, y0, x1, y1, total in spans:
        ys, xs = np.nonzero(owner[y0:y1, x0:x1] == idx)
        if len(xs) < MIN_VISIBLE * total or len(xs) == 0:
            continue
        bx1, by1, bx2, by2 = x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1
        if bx2 - bx1 < MIN_BOX or by2 - by1 < MIN_BOX:
            continue
        truth.append(Truth(label, float(bx1), float(by1), float(bx2), float(by2)))
    return truth


class Photometric:
    """Brightness/contrast, colour cast, sensor noise and blur, fixed per scene or per frame."""

    def __init__(self, rng: np.random.Generator, noise_bank: np.ndarray) -> None:
        gain, bias = rng.uniform(0.6, 1.3), rng.uniform(-35, 35)
        cast = rng.uniform(-15, 15, 3)
        ramp = np.arange(256, dtype=np.float32)
        self.lut = np.clip(ramp[:, None] * gain + bias + cast[None, :], 0, 255).astype(np.uint8).reshape(256, 1, 3)
        self.sigma = float(rng.uniform(0.0, 0.1))
        self.bank = noise_bank
        r = rng.random()
        self.blur: np.ndarray | None = None
        if r < 0.25:
            k = int(rng.choice([3, 5]))
            self.blur = np.asarray(cv2.getGaussianKernel(k, 0) @ cv2.getGaussianKernel(k, 0).T, np.float32)
        elif r < 0.35:
            k = int(rng.integers(3, 8))
            line = np.zeros((k, k), np.float32)
            cv2.line(line, (0, k // 2), (k - 1, k // 2), 1.0, 1)
            rot = cv2.getRotationMatrix2D(((k - 1) / 2, (k - 1) / 2), float(rng.uniform(0, 180)), 1.0)
            kernel = np.asarray(cv2.warpAffine(line, rot, (k, k)), np.float32)
            self.blur = kernel / max(1e-6, float(kernel.sum()))

    def apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The effects on one frame (the noise crop moves every call)."""
        out = cv2.LUT(image, self.lut)
        if self.sigma > 0.005:
            h, w = out.shape[:2]
            oy, ox = int(rng.integers(0, self.bank.shape[0] - h)), int(rng.integers(0, self.bank.shape[1] - w))
            noise = self.bank[oy : oy + h, ox : ox + w]
            out = cv2.addWeighted(out, 1.0, noise, self.sigma, -128 * self.sigma)
        if self.blur is not None:
            out = cv2.filter2D(out, -1, self.blur)
        return out


def noise_bank(seed: int, width: int, height: int) -> np.ndarray:
    """A seeded bank of sensor noise (uint8 centred on 128), twice the frame size."""
    rng = np.random.default_rng(seed ^ 0x5EED)
    return np.clip(rng.normal(128, 40, (height * 2, width * 2, 3)), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------ independent scenes


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _place(rng: np.random.Generator, label: str, size: float, w: int, h: int, horizon: int, aerial: bool) -> Placed:
    top_view = label in ("car", "truck") and aerial
    patch = PAINTERS[label](rng, size, top=True) if top_view else PAINTERS[label](rng, size)
    patch = (lit(rng, patch[0]), patch[1])
    ph, pw = patch[1].shape
    x = int(rng.uniform(-pw * 0.3, w - pw * 0.7))
    if aerial:
        y = int(rng.uniform(-ph * 0.3, h - ph * 0.7))
    elif label == "drone" and rng.random() < 0.8:
        y = int(rng.uniform(h * 0.03, max(h * 0.05, horizon - ph * 0.5)))
    else:
        lo, hi = SIZES[label]
        depth = math.log(max(size, lo) / lo) / math.log(hi / lo)
        depth = float(np.clip(depth + rng.normal(0, 0.15), 0, 1))
        bottom = horizon + (0.1 + 0.9 * depth) * (h - horizon) + rng.uniform(-5, 20)
        y = int(bottom - ph)
    return Placed(patch, x, y, label)


def render_scene(seed: int, width: int = 640, height: int = 480, bank: np.ndarray | None = None) -> SynthFrame:
    """One independent training/evaluation frame: new background, objects, effects, JPEG."""
    rng = np.random.default_rng(seed)
    bank = noise_bank(seed, width, height) if bank is None else bank
    aerial = rng.random() < 0.15
    if aerial:
        image, horizon = _aerial_background(rng, width, height), 0
    else:
        image, horizon = ground_background(rng, width, height)
        clutter(rng, image, horizon)
    items: list[Placed] = []
    for _ in range(int(rng.integers(1, 9))):
        label = CLASSES[int(rng.integers(len(CLASSES)))]
        lo, hi = SIZES[label]
        size = log_uniform(rng, lo * (0.5 if aerial else 1), hi * (0.5 if aerial else 1))
        items.append(_place(rng, label, size, width, height, horizon, aerial))
    items.sort(key=lambda p: p.y + p.patch[1].shape[0])  # back to front
    items += occluders(rng, width, height, horizon) if not aerial else []
    owner = np.zeros((height, width), np.int16)
    truth = composite(image, owner, items)
    image = Photometric(rng, bank).apply(image, rng)
    quality = int(rng.integers(25, 96))
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    decoded = cv2.imdecode(jpeg, cv2.IMREAD_COLOR) if ok else None
    return SynthFrame(image if decoded is None else decoded, truth)
