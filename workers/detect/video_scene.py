"""The ``synthetic`` camera: a persistent scene whose actors move between frames.

People walk, vehicles drive, drones drift, bags are left and picked up, and now and
then someone carries a weapon-like object through — first at ``first_weapon_s``. Uses
the compositor and painters of :mod:`workers.detect.synth`, so ground truth comes with
every frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from workers.detect.painters import PAINTERS, SIZES, Patch
from workers.detect.synth import (
    Photometric,
    Placed,
    SynthFrame,
    clutter,
    composite,
    ground_background,
    lit,
    log_uniform,
    noise_bank,
    occluders,
)


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
    cache: dict[int, Patch] = field(default_factory=dict)

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
        self.background, self.horizon = ground_background(self.rng, width, height)
        clutter(self.rng, self.background, self.horizon)
        self.occluders = occluders(self.rng, width, height, self.horizon)
        self.photo = Photometric(self.rng, noise_bank(seed, width, height))
        self.photo.blur = None  # a steady camera: no per-scene blur
        self.photo.sigma = min(self.photo.sigma, 0.05)
        self.actors: list[Actor] = []
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
        size = log_uniform(rng, max(lo, 24.0), min(hi, 200.0))
        depth = math.log(max(size, lo) / lo) / math.log(hi / lo)
        bottom = self.horizon + (0.15 + 0.8 * depth) * (self.height - self.horizon)
        direction = 1 if rng.random() < 0.5 else -1
        speed = {
            "person": size * 0.5,
            "car": 90.0,
            "truck": 70.0,
            "drone": 50.0,
            "bag": 0.0,
            "weapon": 60.0 + size * 0.3,
        }
        vx = direction * speed[label] * rng.uniform(0.7, 1.3)
        x = rng.uniform(0, self.width) if anywhere or label == "bag" else (-size if direction > 0 else self.width)
        vy = 0.0
        if label == "drone":
            bottom = rng.uniform(self.height * 0.1, max(self.height * 0.15, self.horizon))
            vy = rng.uniform(-8, 8)
        if label == "weapon":
            bottom = self.horizon + rng.uniform(0.5, 0.8) * (self.height - self.horizon)
        ttl = rng.uniform(12, 30) if label == "bag" else math.inf
        self.actors.append(
            Actor(
                label, size, x, bottom, vx, vy, int(rng.integers(1 << 30)), angle=float(rng.uniform(-30, 30)), ttl=ttl
            )
        )

    def _advance(self) -> None:
        self.t += self.dt
        for a in self.actors:
            a.x += a.vx * self.dt
            a.bottom += a.vy * self.dt
            a.phase += self.dt * 6.0
            a.ttl -= self.dt
        margin = 260
        self.actors = [a for a in self.actors if -margin < a.x < self.width + margin // 2 and a.ttl > 0]
        if self.t >= self.next_weapon and not any(a.label == "weapon" for a in self.actors):
            self._spawn("weapon")
            self.next_weapon = self.t + float(self.rng.uniform(*self.weapon_every))
        if len(self.actors) < self.max_actors and self.rng.random() < self.dt * 0.6:
            self._spawn()

    def frame(self) -> SynthFrame:
        """The next frame (advances scene time by 1/fps)."""
        self._advance()
        self.frames += 1
        image = self.background.copy()
        items: list[Placed] = []
        for a in sorted(self.actors, key=lambda a: a.bottom):
            patch = a.patch(a.seed + 1)
            ph, pw = patch[1].shape
            items.append(Placed(patch, int(a.x - pw / 2), int(a.bottom - ph), a.label))
        items += self.occluders
        owner = np.zeros((self.height, self.width), np.int16)
        truth = composite(image, owner, items)
        return SynthFrame(self.photo.apply(image, self.rng), truth)
