"""The detection worker: capture → inference → tracking → grading → smart publishing → NATS.

Stages: a capture thread fills a one-frame slot; inference and tracking run in one
worker thread (onnxruntime and OpenCV release the GIL, and the tracker's state is only
ever touched there); grading, event decisions, state writes and video run on the
event loop, which never blocks — so NATS pings are always answered. Events go through
an ordered, acknowledged, bounded buffer; EntityState writes are CAS merges of the
worker's own scopes, throttled.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import platform
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from nats.aio.client import Client as NATS

from app import __version__, topology
from app.contracts.common import utc_now
from app.nats_client import NatsConnectError, close_quietly, connect
from workers.detect import threats
from workers.detect.config import DetectSettings
from workers.detect.events import Identity, Outgoing, Snapshot, boot_event, detection_event, publish_reason
from workers.detect.events import shutdown_event as make_shutdown
from workers.detect.frames import FrameEncoder, annotate
from workers.detect.model import DEFAULT_MODEL, Detector
from workers.detect.objects import ObjectBook, TrackedObject
from workers.detect.sender import EventSender
from workers.detect.sources import Frame, LatestFrame, Source, open_source, parse_source
from workers.detect.state import StateWriter
from workers.detect.tracker import Track, Tracker, TrackerConfig
from workers.state_store import StateStore

log = logging.getLogger("overwatch.detect")


def device_id_for(entity_id: str) -> str:
    """A device id stable across restarts: machine id (or host and MAC) and the entity, hashed."""
    try:
        machine = Path("/etc/machine-id").read_text().strip()
    except OSError:
        machine = ""
    basis = machine or f"{socket.gethostname()}-{uuid.getnode():012x}-{platform.machine()}"
    return hashlib.sha256(f"{basis}-{entity_id}".encode()).hexdigest()[:16]


@dataclass
class Step:
    """One processed frame's tracker output."""

    frame: Frame
    tracks: list[Track]
    labels: list[str]
    removed: set[str]
    infer_ms: float


class Metrics:
    """Pipeline counters, reported in ``analytics.pipeline`` and the logs."""

    def __init__(self) -> None:
        self.processed = 0
        self.skipped = 0
        self.infer_ms: list[float] = []
        self.loop_ms: list[float] = []
        self.nats_reconnects = 0
        self.video_frames = 0
        self.video_failures = 0
        self.fps = 0.0
        self._last_mono = 0.0

    def frame_done(self, infer_ms: float, loop_ms: float) -> None:
        """Record a processed frame."""
        self.processed += 1
        self.infer_ms = (self.infer_ms + [infer_ms])[-200:]
        self.loop_ms = (self.loop_ms + [loop_ms])[-200:]
        now = time.monotonic()
        if self._last_mono:
            inst = 1.0 / max(now - self._last_mono, 1e-6)
            self.fps = inst if self.fps == 0 else 0.9 * self.fps + 0.1 * inst
        self._last_mono = now


class DetectionWorker:
    """One camera entity's detection pipeline."""

    def __init__(self, settings: DetectSettings, detector: Detector | None = None) -> None:
        self.settings = settings
        self.ident_device = settings.device_id or device_id_for(settings.entity_id)
        self.table = threats.load_table(Path(settings.threat_table) if settings.threat_table else None)
        self.spec = parse_source(settings.source)
        model = Path(settings.model) if settings.model else DEFAULT_MODEL
        labels = Path(settings.labels) if settings.labels else None
        self.detector = detector or Detector(
            model, labels, conf=min(0.1, settings.conf), iou=settings.iou, threads=settings.threads
        )
        self.ident = Identity(settings.org_id, settings.entity_id, self.ident_device, self.detector.model_type)
        self.subject = topology.detection_subject(settings.org_id, settings.entity_id)
        self.video_subject = topology.video_subject(settings.entity_id)
        self.tracker = Tracker(
            TrackerConfig(
                high=settings.conf,
                low=min(0.1, settings.conf),
                new_track=min(1.0, settings.conf + 0.05),
                buffer=settings.track_buffer,
            )
        )
        self.book = ObjectBook(self.table, lost_after=settings.lost_after)
        self.threats = threats.ThreatBook()
        self.published: dict[str, Snapshot] = {}
        self.metrics = Metrics()
        self.encoder = FrameEncoder(settings.video_fps, settings.video_max_dimension, settings.video_quality)
        self.boot_id = uuid.uuid4().hex[:12]
        self.started_at = utc_now()
        self.nc: NATS | None = None
        self.sender: EventSender | None = None
        self.state: StateWriter | None = None
        self.source: Source | None = None
        self.slot: LatestFrame | None = None
        self._infer_pool = ThreadPoolExecutor(1, thread_name_prefix="infer")
        self._video_pool = ThreadPoolExecutor(1, thread_name_prefix="video")
        self._video_task: asyncio.Future[None] | None = None
        self.last_frame_shape = (480, 640)

    # ------------------------------------------------------------------ lifecycle

    async def run(self, stopping: asyncio.Event) -> int:
        """Connect, process until ``stopping`` is set or the source ends, shut down cleanly."""
        nc = await self._connect(stopping)
        if nc is None:
            return 0
        self.nc = nc
        js = nc.jetstream()
        self.sender = EventSender(js, capacity=self.settings.event_buffer, on_drop=self._forget_dropped)
        sender_stop = asyncio.Event()
        sender_task = asyncio.create_task(self.sender.run(sender_stop), name="detect-sender")
        await self._bind_state(js)
        self.sender.submit(boot_event(self.ident, self.subject, self.boot_id, self.fingerprint()))
        self.slot = LatestFrame(asyncio.get_running_loop())
        self.source = open_source(
            self.spec,
            self.slot,
            fps=self.settings.source_fps,
            stall_after=self.settings.stall_seconds,
            loop_file=self.settings.loop,
        )
        self.source.start()
        log.info(
            "detecting on %s for %s/%s (device %s, model %s)",
            self.spec.label,
            self.settings.org_id,
            self.settings.entity_id,
            self.ident_device,
            self.detector.path.name,
        )
        try:
            await self._loop(stopping)
        finally:
            await self._shutdown(sender_stop, sender_task)
        return 0

    async def _connect(self, stopping: asyncio.Event) -> NATS | None:
        s = self.settings
        backoff = 1.0
        while not stopping.is_set():
            try:
                return await connect(
                    s.servers,
                    name=f"overwatch-detect-{s.entity_id}",
                    timeout=10.0,
                    token=s.nats_token,
                    creds=s.nats_creds,
                    nkey_seed_file=s.nats_nkey_seed_file,
                    nkey_seed=s.nats_nkey_seed,
                    user=s.nats_user,
                    password=s.nats_password,
                    on_state=self._on_nats_state,
                )
            except NatsConnectError as exc:
                log.warning("%s; retrying in %.0fs", exc, backoff)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), backoff)
                backoff = min(backoff * 2, 30.0)
        return None

    def _on_nats_state(self, connected: bool) -> None:
        if connected:
            self.metrics.nats_reconnects += 1

    async def _bind_state(self, js: Any) -> None:
        if self.settings.kv_mode == "off":
            return
        try:
            kv = await js.key_value(topology.BUCKET_STATE)
        except Exception as exc:  # noqa: BLE001 - no KV access (permissions, other server): events only
            log.error("cannot bind %s (%s); publishing events only", topology.BUCKET_STATE, exc)
            return
        self.state = StateWriter(
            StateStore(kv, writer="detection"), self.settings.entity_id, self.settings.org_id, hz=self.settings.kv_hz
        )

    async def _loop(self, stopping: asyncio.Event) -> None:
        assert self.slot is not None and self.source is not None
        loop = asyncio.get_running_loop()
        min_period = 1.0 / self.settings.max_fps if self.settings.max_fps > 0 else 0.0
        last_started = 0.0
        while not stopping.is_set():
            frame = await self.slot.take(timeout=0.5)
            if frame is None:
                if self.source.stats.ended:
                    log.info(
                        "source %s ended%s",
                        self.spec.label,
                        f": {self.source.stats.error}" if self.source.stats.error else "",
                    )
                    return
                self._sweep_idle()
                continue
            if min_period and frame.mono - last_started < min_period:
                self.metrics.skipped += 1
                continue
            last_started = frame.mono
            step = await loop.run_in_executor(self._infer_pool, self._infer_and_track, frame)
            started = time.perf_counter()
            self._publish_step(step)
            self.metrics.frame_done(step.infer_ms, (time.perf_counter() - started) * 1000)

    async def _shutdown(self, sender_stop: asyncio.Event, sender_task: asyncio.Task[None]) -> None:
        if self.source is not None:
            await asyncio.to_thread(self.source.stop)
        if self._video_task is not None:
            await asyncio.gather(self._video_task, return_exceptions=True)
        for obj in self.book.active():  # everything leaves with us
            self._emit(obj, "lost")
            self.threats.clear(obj.track_id)
        if self.state is not None:
            await self.state.drain()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.state.write_now(self.scopes(stopping=True)), 3.0)
        assert self.sender is not None
        self.sender.submit(make_shutdown(self.ident, self.subject, self.boot_id, self.book.analytics()))
        sender_stop.set()
        await asyncio.gather(sender_task, return_exceptions=True)
        if not await self.sender.flush(3.0):
            log.warning("%d events could not be delivered before exit", self.sender.pending)
        await close_quietly(self.nc)
        self._infer_pool.shutdown(wait=False)
        self._video_pool.shutdown(wait=False)
        log.info(
            "stopped: %d frames processed, %d events published, %d state writes",
            self.metrics.processed,
            self.sender.published,
            self.state.writes if self.state else 0,
        )

    # ------------------------------------------------------------------ per frame

    def _infer_and_track(self, frame: Frame) -> Step:
        """Runs in the inference thread: detector and tracker (sequential, single owner)."""
        det = self.detector.detect(frame.image)
        tracks = self.tracker.update(det.xyxy, det.scores, det.classes)
        # Publish only what clears the confidence threshold now or did when confirmed.
        shown = [t for t in tracks if t.score > self.settings.conf or t.track_id in self.book.objects]
        return Step(
            frame,
            shown,
            [self.detector.label(t.cls) for t in shown],
            {t.track_id for t in self.tracker.removed},
            det.infer_ms,
        )

    def _publish_step(self, step: Step) -> None:
        frame = step.frame
        h, w = frame.image.shape[:2]
        self.last_frame_shape = (h, w)
        observed = self.book.observe(step.tracks, step.labels, w, h, frame.captured_at, frame.mono)
        urgent = False
        for obj, returned in observed:
            snap = Snapshot(obj.label, obj.confidence, *obj.centre, obj.threat_level)
            reason = (
                "reappeared"
                if returned
                else publish_reason(
                    self.published.get(obj.track_id), snap, self.settings.movement, self.settings.confidence
                )
            )
            if reason:
                self._emit(obj, reason, snap)
            if self.threats.observe(obj.track_id, obj.label, obj.threat_level, obj.confidence, frame.captured_at):
                urgent = True
        lost, _removed = self.book.sweep(frame.mono, step.removed)
        for obj in lost:
            self._emit(obj, "lost")
            urgent = self.threats.clear(obj.track_id) or urgent
        if self.state is not None:
            if observed or lost:
                self.state.changed(urgent=urgent)
            self.state.tick(self.scopes)
        self._maybe_video(frame)

    def _sweep_idle(self) -> None:
        """No frame arrived: still age objects out and keep the state heartbeat."""
        lost, _ = self.book.sweep(time.monotonic(), set())
        urgent = False
        for obj in lost:
            self._emit(obj, "lost")
            urgent = self.threats.clear(obj.track_id) or urgent
        if self.state is not None:
            if lost:
                self.state.changed(urgent=urgent)
            self.state.tick(self.scopes)

    def _emit(self, obj: TrackedObject, reason: str, snap: Snapshot | None = None) -> None:
        assert self.sender is not None
        obj.seq += 1
        level = obj.threat_level
        self.sender.submit(
            detection_event(
                self.ident,
                self.subject,
                track_id=obj.track_id,
                seq=obj.seq,
                label=obj.label,
                confidence=obj.confidence,
                bbox=obj.bbox,
                frame_timestamp=obj.last_seen,
                native_id=obj.native_id,
                threat_level=level,
                indicators=obj.indicators,
                reason=reason,
                threat_reason=threats.reason(obj.label, level, obj.confidence) if level in threats.ALERTING else "",
            )
        )
        if reason == "lost":
            self.published.pop(obj.track_id, None)
        elif snap is not None:
            self.published[obj.track_id] = snap

    def _forget_dropped(self, event: Outgoing) -> None:
        """A buffered event was dropped: make that object publish again on its next frame."""
        self.published.pop(event.track_id, None)

    def _maybe_video(self, frame: Frame) -> None:
        if not self.settings.video or self.nc is None or not self.encoder.due():
            return
        if self._video_task is not None and not self._video_task.done():
            return
        objects = self.book.active()
        banner = threats.alert_level([o.threat_level for o in objects])
        image = frame.image
        annotated = self.settings.video_annotated
        loop = asyncio.get_running_loop()

        def encode() -> tuple[bytes, int, int]:
            return self.encoder.encode(annotate(image, objects, banner) if annotated else image)

        async def send() -> None:
            try:
                jpeg, width, height = await loop.run_in_executor(self._video_pool, encode)
                assert self.nc is not None
                await self.nc.publish(
                    self.video_subject,
                    jpeg,
                    headers={
                        "Content-Type": "image/jpeg",
                        "Frame-Number": str(frame.seq),
                        "Timestamp": frame.captured_at,
                        "Width": str(width),
                        "Height": str(height),
                        "Detection-Count": str(len(objects)),
                        "Entity-ID": self.settings.entity_id,
                        "Device-ID": self.ident_device,
                    },
                )
                self.metrics.video_frames += 1
            except Exception as exc:  # noqa: BLE001 - video is best effort; events and state are not
                self.metrics.video_failures += 1
                if self.metrics.video_failures in (1, 100):
                    log.warning("video frame not sent: %s", exc)

        self._video_task = asyncio.ensure_future(send())

    # ------------------------------------------------------------------ reported state

    def pipeline(self) -> dict[str, Any]:
        """Counters for ``analytics.pipeline`` (and the metrics page)."""
        m, slot, sender, state = self.metrics, self.slot, self.sender, self.state
        src = self.source.stats if self.source else None
        return {
            "fps": round(m.fps, 2),
            "frames_captured": slot.captured if slot else 0,
            "frames_processed": m.processed,
            "frames_dropped": (slot.dropped if slot else 0) + m.skipped,
            "inference_ms_p50": round(float(np.median(m.infer_ms)), 2) if m.infer_ms else None,
            "inference_ms_p99": round(float(np.percentile(m.infer_ms, 99)), 2) if m.infer_ms else None,
            "events_published": sender.published if sender else 0,
            "events_failed": sender.failed if sender else 0,
            "events_dropped": sender.dropped if sender else 0,
            "events_buffered": sender.pending if sender else 0,
            "kv_writes": state.writes if state else 0,
            "kv_conflicts": state.conflicts if state else 0,
            "kv_failures": state.failures if state else 0,
            "video_frames": m.video_frames,
            "nats_reconnects": m.nats_reconnects,
            "source_reconnects": src.reconnects if src else 0,
            "source_connected": bool(src and src.connected),
        }

    def scopes(self, stopping: bool = False) -> dict[str, Any]:
        """The owned EntityState scopes, as of now."""
        now = utc_now()
        objects = [] if stopping else self.book.active()
        analytics = self.book.analytics()
        if stopping:
            analytics.update(active_objects_count=0, threat_distribution={}, active_threat_count=0, active_track_ids=[])
        levels = [o.threat_level for o in objects]
        distribution = analytics["threat_distribution"]
        return {
            "device_id": self.ident_device,
            "is_live": not stopping,
            "mission": {
                "mode": "c4isr",
                "status": "stopped" if stopping else "operational",
                "started_at": self.started_at,
                "model": self.detector.model_type,
                "source": self.spec.label,
            },
            "detections": {"timestamp": now, "objects": {o.track_id: o.as_scope() for o in objects}},
            "analytics": {
                "timestamp": now,
                "summary": {
                    "total_unique_objects": analytics["total_unique_objects"],
                    "active_objects_count": analytics["active_objects_count"],
                    "total_frames_processed": analytics["total_frames_processed"],
                },
                "c4isr_summary": {
                    "timestamp": now,
                    "active_threat_count": analytics["active_threat_count"],
                    "threat_distribution": distribution,
                    "label_distribution": analytics["label_distribution"],
                },
                "pipeline": self.pipeline(),
            },
            "c4isr": {
                "timestamp": now,
                "mission": "C4ISR",
                "threat_intelligence": {
                    "threat_summary": {
                        "total_threats": analytics["active_threat_count"],
                        "alert_level": threats.alert_level(levels),
                        "threat_distribution": distribution,
                    },
                    "threat_alerts": [] if stopping else self.threats.scope(),
                },
            },
        }

    def fingerprint(self) -> dict[str, Any]:
        """The device fingerprint sent with ``bootsequence``."""
        return {
            "organization_id": self.settings.org_id,
            "entity_id": self.settings.entity_id,
            "device_id": self.ident_device,
            "hostname": socket.gethostname(),
            "platform": {
                "system": platform.system(),
                "release": platform.release(),
                "machine": platform.machine(),
                "python_version": platform.python_version(),
            },
            "camera": {"source": self.spec.label, "kind": self.spec.kind},
            "component": {
                "name": "constellation-isr",
                "type": self.detector.model_type,
                "version": __version__,
                **self.detector.info(),
                "mode": "c4isr",
            },
            "fingerprinted_at": utc_now(),
        }
