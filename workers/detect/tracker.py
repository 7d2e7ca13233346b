"""ByteTrack-style multi-object tracker: Kalman (x, y, aspect, height) + two-stage IoU association.

Per frame: predict every track; match high-score detections to tracked and lost
tracks (IoU distance fused with the score); match what is left of the *tracked*
tracks to low-score detections (keeps an object through a weak frame); match
unconfirmed tracks to the remaining high detections; start new tracks from the rest.
Unmatched tracks are marked lost and removed after ``buffer`` frames — until then a
returning object gets its old track back, id included.

Each track gets one id (CUID-like: a letter and 23 base-36 characters) for its whole
life. Association is one-to-one, so no two detections of a frame ever share an id.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time
from dataclasses import dataclass, field

import numpy as np

from workers.detect.assign import linear_assignment
from workers.detect.boxes import iou_matrix

_counter = itertools.count()
_FINGERPRINT = f"{os.getpid()}-{time.time_ns()}-{os.urandom(8).hex()}"
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_track_id() -> str:
    """A collision-resistant id in CUID2 form: 24 lowercase base-36 characters, starting with a letter."""
    digest = hashlib.sha3_256(f"{_FINGERPRINT}-{time.time_ns()}-{next(_counter)}-{os.urandom(8).hex()}".encode())
    n = int.from_bytes(digest.digest(), "big")
    chars = []
    for _ in range(23):
        n, r = divmod(n, 36)
        chars.append(_ALPHABET[r])
    return _ALPHABET[10 + n % 26] + "".join(chars)


class KalmanXYAH:
    """Constant-velocity Kalman filter over (cx, cy, aspect, height) with noise scaled by height."""

    def __init__(self) -> None:
        self.F = np.eye(8)
        for i in range(4):
            self.F[i, i + 4] = 1.0
        self.H = np.eye(4, 8)
        self.w_pos, self.w_vel = 1 / 20, 1 / 160

    def initiate(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """State and covariance for a first measurement."""
        mean = np.r_[z, np.zeros(4)]
        h = z[3]
        std = [2 * self.w_pos * h, 2 * self.w_pos * h, 1e-2, 2 * self.w_pos * h]
        std += [10 * self.w_vel * h, 10 * self.w_vel * h, 1e-5, 10 * self.w_vel * h]
        return mean, np.diag(np.square(std))

    def predict(self, mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One step ahead."""
        h = mean[3]
        std = [self.w_pos * h, self.w_pos * h, 1e-2, self.w_pos * h, self.w_vel * h, self.w_vel * h, 1e-5]
        std.append(self.w_vel * h)
        q = np.diag(np.square(std))
        return self.F @ mean, self.F @ cov @ self.F.T + q

    def update(self, mean: np.ndarray, cov: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Correct with a measurement."""
        h = mean[3]
        r = np.diag(np.square([self.w_pos * h, self.w_pos * h, 1e-1, self.w_pos * h]))
        s = self.H @ cov @ self.H.T + r
        gain = np.linalg.solve(s, (cov @ self.H.T).T).T
        mean = mean + gain @ (z - self.H @ mean)
        cov = cov - gain @ s @ gain.T
        return mean, cov


def xyxy_to_xyah(b: np.ndarray) -> np.ndarray:
    w, h = b[2] - b[0], max(b[3] - b[1], 1e-3)
    return np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2, w / h, h], np.float64)


def xyah_to_xyxy(m: np.ndarray) -> np.ndarray:
    w = m[2] * m[3]
    return np.array([m[0] - w / 2, m[1] - m[3] / 2, m[0] + w / 2, m[1] + m[3] / 2], np.float32)


@dataclass(eq=False)
class Track:
    """One tracked object's filter state and bookkeeping."""

    track_id: str
    mean: np.ndarray
    cov: np.ndarray
    score: float
    cls: int
    confirmed: bool = False
    state: str = "tracked"  # tracked | lost | removed
    hits: int = 1
    missed: int = 0  # consecutive frames without a match
    class_votes: dict[int, float] = field(default_factory=dict)
    box: np.ndarray = field(default_factory=lambda: np.zeros(4, np.float32))

    @property
    def xyxy(self) -> np.ndarray:
        """The current (filtered) box."""
        return xyah_to_xyxy(self.mean)

    def vote(self, cls: int, score: float) -> None:
        """Class by decayed score votes: one odd frame does not flip the label."""
        for k in self.class_votes:
            self.class_votes[k] *= 0.8
        self.class_votes[cls] = self.class_votes.get(cls, 0.0) + score
        self.cls = max(self.class_votes, key=self.class_votes.__getitem__)


@dataclass(frozen=True)
class TrackerConfig:
    """Thresholds (ByteTrack defaults adapted to a focal-loss detector's moderate scores)."""

    high: float = 0.3
    low: float = 0.1
    new_track: float = 0.35
    match: float = 0.8
    buffer: int = 30  # frames a lost track is kept for re-identification


class Tracker:
    """Associates per-frame detections into tracks with stable ids."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self.kf = KalmanXYAH()
        self.tracks: list[Track] = []
        self.frame = 0
        self.removed: list[Track] = []

    def update(
        self, xyxy: np.ndarray, scores: np.ndarray, classes: np.ndarray, high_at: np.ndarray | None = None
    ) -> list[Track]:
        """Feed one frame's detections; return the tracks matched in this frame (confirmed ones).

        ``high_at`` gives each detection its own high-confidence threshold (per-class
        thresholds); unset, ``config.high`` applies to all. New tracks need that plus
        ``new_track - high``.
        """
        cfg = self.config
        self.frame += 1
        self.removed = []
        for t in self.tracks:
            t.mean, t.cov = self.kf.predict(t.mean, t.cov)
        if high_at is None:
            high_at = np.full(len(scores), cfg.high, np.float32)
        high = np.nonzero(scores >= high_at)[0]
        low = np.nonzero((scores > cfg.low) & (scores < high_at))[0]
        pool = [t for t in self.tracks if t.confirmed]
        unconfirmed = [t for t in self.tracks if not t.confirmed]
        matched: list[Track] = []

        def associate(
            tracks: list[Track], dets: np.ndarray, threshold: float, fuse: bool
        ) -> tuple[list[int], list[int]]:
            if not tracks or len(dets) == 0:
                return list(range(len(tracks))), list(range(len(dets)))
            boxes = np.stack([t.xyxy for t in tracks])
            dist = 1 - iou_matrix(boxes, xyxy[dets])
            if fuse:
                dist = 1 - (1 - dist) * scores[dets][None, :]
            pairs, lost_t, left_d = linear_assignment(dist, threshold)
            for ti, di in pairs:
                self._apply(tracks[ti], int(dets[di]), xyxy, scores, classes)
                matched.append(tracks[ti])
            return lost_t, left_d

        rest_t, rest_high = associate(pool, high, cfg.match, fuse=True)
        still = [pool[i] for i in rest_t if pool[i].state == "tracked"]
        already_lost = [pool[i] for i in rest_t if pool[i].state == "lost"]
        rest_t2, _ = associate(still, low, 0.5, fuse=False)
        for i in rest_t2:
            self._miss(still[i])
        for track in already_lost:
            self._miss(track)
        leftover = high[rest_high]
        rest_u, rest_new = associate(unconfirmed, leftover, 0.7, fuse=True)
        for i in rest_u:
            unconfirmed[i].state = "removed"
        for di in leftover[rest_new]:
            if scores[di] >= min(1.0, high_at[di] + cfg.new_track - cfg.high):
                mean, cov = self.kf.initiate(xyxy_to_xyah(xyxy[di]))
                track = Track(new_track_id(), mean, cov, float(scores[di]), int(classes[di]))
                track.vote(int(classes[di]), float(scores[di]))
                track.box = xyxy[di].astype(np.float32)
                track.confirmed = self.frame == 1  # only the very first frame confirms at once
                self.tracks.append(track)
                if track.confirmed:
                    matched.append(track)
        self.removed = [t for t in self.tracks if t.state == "removed"]
        self.tracks = [t for t in self.tracks if t.state != "removed"]
        return [t for t in matched if t.confirmed]

    def _apply(self, track: Track, di: int, xyxy: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> None:
        track.mean, track.cov = self.kf.update(track.mean, track.cov, xyxy_to_xyah(xyxy[di]))
        track.score = float(scores[di])
        track.vote(int(classes[di]), float(scores[di]))
        track.box = xyxy[di].astype(np.float32)
        track.hits += 1
        track.missed = 0
        track.state = "tracked"
        track.confirmed = True if track.hits >= 2 else track.confirmed

    def _miss(self, track: Track) -> None:
        track.missed += 1
        track.state = "removed" if track.missed > self.config.buffer else "lost"
