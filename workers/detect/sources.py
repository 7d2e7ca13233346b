"""Frame sources: synthetic scene, video file, RTSP/HTTP stream, local camera.

Each source runs a capture thread that puts frames into a one-slot :class:`LatestFrame`:
a frame the pipeline has not taken yet is replaced (and counted as dropped), and a
frame is handed out once — a stale frame is never inferred again. Network streams
reconnect forever with exponential backoff and jitter (1 s → 30 s); a stream that
delivers nothing for ``stall_after`` seconds counts as stalled and is reopened. Open
and read timeouts are passed to OpenCV's FFmpeg backend at open time (setting them
afterwards has no effect).
"""

from __future__ import annotations

import abc
import asyncio
import logging
import os
import random
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from core.contracts.common import utc_now
from workers.detect.synth import Truth
from workers.detect.video_scene import VideoScene

log = logging.getLogger("overwatch.detect.source")

NETWORK_SCHEMES = ("rtsp", "rtsps", "http", "https")


class SourceError(ValueError):
    """The source specification is not usable (fail fast, before connecting anything)."""


@dataclass(frozen=True)
class Frame:
    """A captured frame, stamped at capture."""

    image: np.ndarray
    seq: int
    captured_at: str
    mono: float
    truth: list[Truth] | None = None


class LatestFrame:
    """One-slot handoff from a capture thread to the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._frame: Frame | None = None
        self._ready = asyncio.Event()
        self.taken = threading.Event()  # set when a frame was handed out (lets a file source pace itself)
        self.dropped = 0
        self.captured = 0

    def put(self, frame: Frame) -> None:
        """Called from the capture thread."""
        with self._lock:
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
            self.captured += 1
        try:
            self.loop.call_soon_threadsafe(self._ready.set)
        except RuntimeError:  # loop closed during shutdown
            pass

    @property
    def pending(self) -> bool:
        """Whether a frame waits to be taken."""
        return self._frame is not None

    async def take(self, timeout: float) -> Frame | None:
        """The newest frame not handed out yet, waiting up to ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            return None
        with self._lock:
            frame, self._frame = self._frame, None
            self._ready.clear()
        self.taken.set()
        return frame


def redact(url: str) -> str:
    """A URL without credentials, query or fragment (safe to log and report)."""
    parts = urlsplit(url)
    if not parts.scheme:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclass
class SourceSpec:
    """A parsed ``--source``: kind and target."""

    kind: str  # synthetic | file | network | camera
    target: str | int
    seed: int = 7

    @property
    def label(self) -> str:
        """What to show and log (no credentials)."""
        return redact(str(self.target)) if self.kind == "network" else str(self.target)


def parse_source(spec: str) -> SourceSpec:
    """``synthetic[:seed]``, ``rtsp://…``/``http://…``, ``/dev/videoN``, a camera index, or a video file."""
    spec = spec.strip()
    if not spec:
        raise SourceError("no video source given (use synthetic, a file, rtsp://…, /dev/videoN or a camera index)")
    if spec == "synthetic" or spec.startswith("synthetic:"):
        seed = spec.partition(":")[2]
        if seed and not seed.isdigit():
            raise SourceError(f"synthetic seed must be a number, not {seed!r}")
        return SourceSpec("synthetic", "synthetic", int(seed or 7))
    scheme = urlsplit(spec).scheme.lower()
    if scheme in NETWORK_SCHEMES:
        if not urlsplit(spec).hostname:
            raise SourceError(f"stream URL has no host: {redact(spec)}")
        return SourceSpec("network", spec)
    if re.fullmatch(r"\d{1,2}", spec):
        return SourceSpec("camera", int(spec))
    if spec.startswith("/dev/video"):
        if not os.path.exists(spec):
            raise SourceError(f"camera device {spec} does not exist")
        return SourceSpec("camera", spec)
    if scheme and len(scheme) > 1:
        raise SourceError(f"unsupported source scheme {scheme!r} (use rtsp, rtsps, http or https)")
    if not Path(spec).is_file():
        raise SourceError(f"video file not found: {spec}")
    return SourceSpec("file", spec)


@dataclass
class SourceStats:
    """What the capture side reports."""

    connected: bool = False
    reconnects: int = 0
    last_frame_mono: float = 0.0
    ended: bool = False
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Source(abc.ABC):
    """A capture thread feeding a :class:`LatestFrame`."""

    def __init__(self, slot: LatestFrame) -> None:
        self.slot = slot
        self.stats = SourceStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seq = 0

    def start(self) -> None:
        """Start capturing."""
        self._thread = threading.Thread(target=self._guarded, name=f"capture-{type(self).__name__}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        """Stop capturing and wait for the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _guarded(self) -> None:
        try:
            self.capture()
        except Exception as exc:
            log.exception("capture thread failed")
            self.stats.error = f"{type(exc).__name__}: {exc}"
            self.stats.ended = True

    def emit(self, image: np.ndarray, truth: list[Truth] | None = None) -> None:
        """Hand a new frame to the pipeline."""
        self._seq += 1
        now = time.monotonic()
        self.stats.last_frame_mono = now
        self.slot.put(Frame(image, self._seq, utc_now(), now, truth))

    @abc.abstractmethod
    def capture(self) -> None:
        """The thread body: emit frames until stopped."""


class SyntheticSource(Source):
    """The procedural scene at a fixed frame rate (ground truth attached to each frame)."""

    def __init__(
        self, slot: LatestFrame, seed: int = 7, fps: float = 15.0, width: int = 640, height: int = 480
    ) -> None:
        super().__init__(slot)
        self.scene = VideoScene(seed=seed, width=width, height=height, fps=fps)
        self.period = 1.0 / fps

    def capture(self) -> None:
        self.stats.connected = True
        next_at = time.monotonic()
        while not self._stop.is_set():
            frame = self.scene.frame()
            self.emit(frame.image, frame.truth)
            next_at += self.period
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_at = time.monotonic()  # fell behind: do not try to catch up


class CaptureSource(Source):
    """OpenCV capture of a file, network stream or camera, with reconnects for streams."""

    def __init__(
        self,
        slot: LatestFrame,
        spec: SourceSpec,
        open_timeout: float = 10.0,
        stall_after: float = 10.0,
        loop_file: bool = False,
        backoff: tuple[float, float] = (1.0, 30.0),
        every_frame: bool = False,
    ) -> None:
        """``every_frame`` (files only): hand over the next frame only once the last one was taken."""
        super().__init__(slot)
        self.spec = spec
        self.every_frame = every_frame and spec.kind == "file"
        self.open_timeout, self.stall_after = open_timeout, stall_after
        self.loop_file = loop_file
        self.backoff = backoff

    def _open(self) -> cv2.VideoCapture:
        target = self.spec.target
        if self.spec.kind == "camera":
            return cv2.VideoCapture(target)
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(self.open_timeout * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,  # stall detection by time: a read gives up after this
            int(self.stall_after * 1000),
        ]
        return cv2.VideoCapture(str(target), cv2.CAP_FFMPEG, params)

    def capture(self) -> None:
        failures = 0
        while not self._stop.is_set():
            cap = self._open()
            if not cap.isOpened():
                cap.release()
                if self.spec.kind == "file":
                    raise SourceError(f"cannot open video file {self.spec.target}")
                failures += 1
                self._wait_backoff(failures, "open failed")
                continue
            self.stats.connected = True
            fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
            period = 1.0 / fps if self.spec.kind == "file" and 1 <= fps <= 120 and not self.every_frame else 0.0
            opened_at = time.monotonic()
            reason = self._read_until_broken(cap, period, opened_at)
            cap.release()
            self.stats.connected = False
            if reason == "stopped":
                return
            if reason == "end":
                if self.loop_file:
                    continue
                self.stats.ended = True
                return
            failures = 1 if reason.startswith("stalled-after-frames") else failures + 1
            self._wait_backoff(failures, reason)

    def _read_until_broken(self, cap: cv2.VideoCapture, period: float, opened_at: float) -> str:
        got_any = False
        next_at = time.monotonic()
        last = opened_at
        while not self._stop.is_set():
            ok, image = cap.read()
            now = time.monotonic()
            if ok and image is not None:
                got_any = True
                last = now
                if self.every_frame:
                    # Offline analysis of a recording: no frame dropped, as fast as the pipeline takes them.
                    self.slot.taken.clear()
                    self.emit(image)
                    while not self.slot.taken.wait(0.2) and not self._stop.is_set():
                        pass
                    continue
                self.emit(image)
                if period:
                    next_at += period
                    if next_at > now:
                        self._stop.wait(next_at - now)
                    else:
                        next_at = now
                continue
            if self.spec.kind == "file":
                return "end"
            # A failed read on a stream (the read timeout bounds how long it blocks).
            return f"stalled-after-frames ({now - last:.1f}s without a frame)" if got_any else "no frames"
        return "stopped"

    def _wait_backoff(self, failures: int, reason: str) -> None:
        base, cap = self.backoff
        delay = min(cap, base * 2 ** max(0, failures - 1)) * random.uniform(0.5, 1.5)
        self.stats.reconnects += 1
        log.warning("source %s: %s; reconnecting in %.1fs (attempt %d)", self.spec.label, reason, delay, failures)
        self._stop.wait(delay)


def open_source(
    spec: SourceSpec,
    slot: LatestFrame,
    fps: float = 15.0,
    stall_after: float = 10.0,
    loop_file: bool = False,
    every_frame: bool = False,
) -> Source:
    """The capture implementation for a parsed spec."""
    if spec.kind == "synthetic":
        return SyntheticSource(slot, seed=spec.seed, fps=fps)
    if spec.kind == "network" and str(spec.target).lower().startswith("rtsp"):
        # Process-wide FFmpeg options: TCP for RTSP (UDP loses packets on busy links).
        os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
    return CaptureSource(slot, spec, stall_after=stall_after, loop_file=loop_file, every_frame=every_frame)
