"""The ``synthetic`` camera: a persistent scene on a ground plane, seen through a posed pinhole camera.

The camera stands ``SCENE_CAMERA["height_m"]`` above flat ground, tilted down by
``tilt_deg``, with a ``hfov_deg`` field of view; the horizon row follows from that pose.
People walk, vehicles drive and bags lie *at known ground positions* (metres right of
and ahead of the camera), drawn at the size their real size has at that distance —
so the map can show the same objects the video shows, and the projection of each box's
ground contact point has ground truth (``VideoScene.ground``). Drones fly (no ground
point); the weapon-like object is carried at hand height. Now and then someone carries
it through — first at ``first_weapon_s``. Uses the compositor and painters of
:mod:`workers.detect.synth`, so ground truth boxes come with every frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from core.camera.projection import Pinhole
from workers.detect.painters import PAINTERS, SIZES, Patch
from workers.detect.synth import (
    Photometric,
    Placed,
    SynthFrame,
    Truth,
    clutter,
    composite,
    ground_background,
    lit,
    log_uniform,
    noise_bank,
    occluders,
)

# The synthetic camera's mounting: a mast camera over open ground (the demo registers the same pose).
SCENE_CAMERA = {"height_m": 8.0, "tilt_deg": 7.0, "hfov_deg": 50.0}
# Real sizes (metres) of what each painter's ``size`` measures: height of a person, length of a
# vehicle or a rifle, width of a bag.
REAL_SIZE = {"person": 1.75, "car": 4.4, "truck": 8.0, "bag": 0.6, "weapon": 1.2}
SPEED = {"person": 1.4, "car": 9.0, "truck": 7.0, "bag": 0.0, "weapon": 1.6}  # m/s across the view
CARRY_HEIGHT = 0.9  # the weapon-like object is carried, not on the ground


class GroundTruth(NamedTuple):
    """A visible object's box and where it really is: metres right of and ahead of the camera."""

    truth: Truth
    right_m: float
    forward_m: float
    up_m: float


@dataclass
class Actor:
    """Something moving through a video scene, with a fixed appearance seed."""

    label: str
    size: float
    x: float
    bottom: float
    vx: float
    vy: float = 0.0
    seed: int = 0
    phase: float = 0.0
    angle: float = 0.0
    ttl: float = math.inf  # seconds left (bags are left, then picked up)
    right_m: float = 0.0  # ground position (not for drones, which keep pixel coordinates)
    forward_m: float = 0.0
    up_m: float = 0.0
    vr: float = 0.0  # m/s to the right
    cache: dict[int, Patch] = field(default_factory=dict)

    @property
    def on_ground_plane(self) -> bool:
        """Whether the actor is placed by its ground position (everything but drones)."""
        return self.label != "drone"

    def patch(self, light_seed: int) -> Patch:
        """The actor's patch for its current pose (rigid actors are painted once)."""
        key = int((self.phase % (2 * math.pi)) / (2 * math.pi) * 12) if self.label == "person" else 0
        if key not in self.cache:
            rng = np.random.default_rng(self.seed)
            if self.label == "person":
                raw = PAINTERS["person"](rng, self.size, phase=key / 12 * 2 * math.pi)
            elif self.label in ("car", "truck"):
                raw = PAINTERS[self.label](rng, self.size, top=False)
            elif self.label == "weapon":
                raw = PAINTERS["weapon"](rng, self.size, angle=self.angle)
            else:
                raw = PAINTERS[self.label](rng, self.size)
            self.cache[key] = (lit(np.random.default_rng(light_seed), raw[0]), raw[1])
        return self.cache[key]


def _anchor(alpha: np.ndarray) -> tuple[float, int]:
    """(centre column, bottom row) of a patch's painted pixels: what stands on the ground point."""
    rows = np.nonzero(alpha.any(axis=1))[0]
    cols = np.nonzero(alpha.any(axis=0))[0]
    if len(rows) == 0:
        return alpha.shape[1] / 2, alpha.shape[0]
    return (cols[0] + cols[-1] + 1) / 2, int(rows[-1]) + 1


class VideoScene:
    """A persistent scene whose actors move between frames: the ``synthetic`` camera."""

    def __init__(
        self,
        seed: int = 7,
        width: int = 640,
        height: int = 480,
        fps: float = 15.0,
        first_weapon_s: float = 4.0,
        weapon_every_s: tuple[float, float] = (35.0, 60.0),
        max_actors: int = 6,
    ) -> None:
        self.rng = np.random.default_rng(seed)
        self.width, self.height, self.dt = width, height, 1.0 / fps
        self.camera = Pinhole(width=width, height=height, **SCENE_CAMERA)
        horizon = round(height / 2 - self.camera.focal * math.tan(math.radians(SCENE_CAMERA["tilt_deg"])))
        self.background, self.horizon = ground_background(self.rng, width, height, horizon)
        clutter(self.rng, self.background, self.horizon)
        self.occluders = occluders(self.rng, width, height, self.horizon)
        self.photo = Photometric(self.rng, noise_bank(seed, width, height))
        self.photo.blur = None  # a steady camera: no per-scene blur
        self.photo.sigma = min(self.photo.sigma, 0.05)
        # The nearest ground the frame shows (its bottom row), plus a metre.
        near = self.camera.ground(width / 2, height - 1)
        self.near_m = (near[1] if near else 10.0) + 1.0
        self.actors: list[Actor] = []
        self.ground: list[GroundTruth] = []  # the last frame's visible objects with their true positions
        self.t = 0.0
        self.next_weapon = first_weapon_s
        self.weapon_every = weapon_every_s
        self.max_actors = max_actors
        self.frames = 0
        for _ in range(3):
            self._spawn(anywhere=True)

    def _spawn(self, label: str | None = None, anywhere: bool = False) -> None:
        rng = self.rng
        label = label or str(rng.choice(["person", "person", "car", "truck", "drone", "bag"]))
        lo, hi = SIZES[label]
        direction = 1 if rng.random() < 0.5 else -1
        seed, angle = int(rng.integers(1 << 30)), float(rng.uniform(-30, 30))
        if label == "drone":  # in the sky, in pixels as before: it has no ground point
            size = log_uniform(rng, max(lo, 24.0), min(hi, 200.0))
            bottom = rng.uniform(self.height * 0.1, max(self.height * 0.15, self.horizon))
            x = rng.uniform(0, self.width) if anywhere else (-size if direction > 0 else self.width)
            vx = direction * 50.0 * rng.uniform(0.7, 1.3)
            self.actors.append(Actor(label, size, x, bottom, vx, rng.uniform(-8, 8), seed, angle=angle))
            return
        # Far enough that the object is drawn at least as large as the painters' smallest (what the
        # model was trained on), near enough that its ground point is in the frame.
        up = CARRY_HEIGHT if label == "weapon" else 0.0
        far = self.camera.focal * REAL_SIZE[label] / max(lo, 18.0)
        forward = rng.uniform(self.near_m, max(self.near_m + 1.0, far))
        zc = forward * math.cos(math.radians(SCENE_CAMERA["tilt_deg"]))
        size = self.camera.focal * REAL_SIZE[label] / zc
        half_width = forward * math.tan(math.radians(SCENE_CAMERA["hfov_deg"]) / 2)
        margin = REAL_SIZE[label]
        right = (
            rng.uniform(-half_width, half_width) if anywhere or label == "bag" else -direction * (half_width + margin)
        )
        vr = direction * SPEED[label] * rng.uniform(0.7, 1.3)
        ttl = rng.uniform(12, 30) if label == "bag" else math.inf
        actor = Actor(label, size, 0.0, 0.0, 0.0, 0.0, seed, angle=angle, ttl=ttl)
        actor.right_m, actor.forward_m, actor.up_m, actor.vr = right, forward, up, vr
        self.actors.append(actor)

    def _advance(self) -> None:
        self.t += self.dt
        for a in self.actors:
            a.x += a.vx * self.dt
            a.bottom += a.vy * self.dt
            a.right_m += a.vr * self.dt
            a.phase += self.dt * 6.0
            a.ttl -= self.dt
        self.actors = [a for a in self.actors if self._in_play(a) and a.ttl > 0]
        if self.t >= self.next_weapon and not any(a.label == "weapon" for a in self.actors):
            self._spawn("weapon")
            self.next_weapon = self.t + float(self.rng.uniform(*self.weapon_every))
        if len(self.actors) < self.max_actors and self.rng.random() < self.dt * 0.6:
            self._spawn()

    def _in_play(self, a: Actor) -> bool:
        if not a.on_ground_plane:
            return -260 < a.x < self.width + 130
        half_width = a.forward_m * math.tan(math.radians(SCENE_CAMERA["hfov_deg"]) / 2)
        return abs(a.right_m) < half_width + 2 * REAL_SIZE[a.label] + 1.0

    def frame(self) -> SynthFrame:
        """The next frame (advances scene time by 1/fps)."""
        self._advance()
        self.frames += 1
        image = self.background.copy()
        items: list[Placed] = []
        placed: list[tuple[Actor, Placed]] = []
        for a in self.actors:
            patch = a.patch(a.seed + 1)
            ph, pw = patch[1].shape
            if a.on_ground_plane:
                pixel = self.camera.pixel(a.right_m, a.forward_m, a.up_m)
                if pixel is None:
                    continue
                cx, bottom_row = _anchor(patch[1])
                a.x, a.bottom = pixel
                item = Placed(patch, round(pixel[0] - cx), round(pixel[1] - bottom_row), a.label)
            else:
                item = Placed(patch, int(a.x - pw / 2), int(a.bottom - ph), a.label)
            placed.append((a, item))
        placed.sort(key=lambda p: p[1].y + p[1].patch[1].shape[0])  # back to front
        items = [p for _, p in placed] + self.occluders
        owner = np.zeros((self.height, self.width), np.int16)
        truth = composite(image, owner, items)
        self.ground = self._ground_truth(truth, placed)
        return SynthFrame(self.photo.apply(image, self.rng), truth)

    def _ground_truth(self, truth: list[Truth], placed: list[tuple[Actor, Placed]]) -> list[GroundTruth]:
        out = []
        for t in truth:
            best, best_overlap = None, 0.0
            for actor, item in placed:
                if actor.label != t.label or not actor.on_ground_plane:
                    continue
                ph, pw = item.patch[1].shape
                ix = max(0.0, min(t.x2, item.x + pw) - max(t.x1, item.x))
                iy = max(0.0, min(t.y2, item.y + ph) - max(t.y1, item.y))
                if ix * iy > best_overlap:
                    best, best_overlap = actor, ix * iy
            if best is not None:
                out.append(GroundTruth(t, best.right_m, best.forward_m, best.up_m))
        return out
