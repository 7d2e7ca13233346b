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
import logging
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from nats.aio.client import Client as NATS
from nats.js.errors import KeyNotFoundError

from core import topology
from core.camera.pose import CameraConfig, CameraPose, parse_pose_setting, resolve_pose
from core.contracts.common import utc_now
from fabric.client import NatsConnectError, close_quietly, connect
from fabric.state_store import StateStore
from fabric.tls import ca_context
from services.nats_auth import state_bucket
from workers.detect import threats
from workers.detect.config import DetectSettings
from workers.detect.events import Identity, Outgoing, Snapshot, boot_event, detection_event, publish_reason
from workers.detect.events import shutdown_event as make_shutdown
from workers.detect.frames import FrameEncoder, VideoPublisher
from workers.detect.model import RECOMMENDED_CLASS_CONF, Detections, Detector, ModelError, model_for_source
from workers.detect.objects import ObjectBook, TrackedObject
from workers.detect.persistence import Persistence
from workers.detect.report import Metrics, device_id_for, entity_scopes, fingerprint
from workers.detect.sender import EventSender
from workers.detect.sources import Frame, LatestFrame, Source, open_source, parse_source
from workers.detect.state import StateWriter
from workers.detect.tracker import Track, Tracker, TrackerConfig

log = logging.getLogger("overwatch.detect")


@dataclass
class Step:
    """One processed frame's tracker output."""

    frame: Frame
    tracks: list[Track]
    labels: list[str]
    removed: set[str]
    infer_ms: float


class DetectionWorker:
    """One camera entity's detection pipeline."""

    def __init__(
        self,
        settings: DetectSettings,
        detector: Detector | None = None,
        source_factory: Callable[[LatestFrame], Source] | None = None,
    ) -> None:
        """``source_factory`` replaces the source ``settings.source`` names (benchmarks use a lock-step one)."""
        self.settings = settings
        self.source_factory = source_factory
        self.ident_device = settings.device_id or device_id_for(settings.entity_id)
        self.table = threats.load_table(Path(settings.threat_table) if settings.threat_table else None)
        self.spec = parse_source(settings.source)
        # A real source gets the COCO model, the synthetic one its own scene's model (DETECT_MODEL overrides).
        model = Path(settings.model) if settings.model else model_for_source(self.spec.kind)
        labels = Path(settings.labels) if settings.labels else None
        low = min(0.1, settings.conf if settings.conf is not None else 0.1)
        self.detector = detector or Detector(model, labels, conf=low, iou=settings.iou, threads=settings.threads)
        self.conf = settings.conf if settings.conf is not None else self.detector.recommended_conf
        # The shipped model's per-class defaults only ever raise a class's threshold; DETECT_CLASS_CONF sets it.
        recommended = {
            label: max(value, self.conf)
            for label, value in RECOMMENDED_CLASS_CONF.get(self.detector.model_type, {}).items()
        }
        self.class_conf = self._class_thresholds(recommended | settings.class_thresholds)
        self.ident = Identity(settings.org_id, settings.entity_id, self.ident_device, self.detector.model_type)
        self.subject = topology.detection_subject(settings.org_id, settings.entity_id)
        self.video_subject = topology.video_subject(settings.entity_id)
        self.tracker = Tracker(
            TrackerConfig(high=self.conf, low=low, new_track=min(1.0, self.conf + 0.05), buffer=settings.track_buffer)
        )
        self.persistence = Persistence(settings.min_hits, settings.hit_window)
        # Where the camera is and looks: the entity's state (registry ``camera`` + telemetry), read on
        # every state write; DETECT_CAMERA_POSE fills in what the entity does not say.
        self.pose_fallback: CameraConfig | None = (
            parse_pose_setting(settings.camera_pose) if settings.camera_pose else None
        )
        self.pose: CameraPose | None = resolve_pose(None, self.pose_fallback)
        self.book = ObjectBook(self.table, lost_after=settings.lost_after)
        self.threats = threats.ThreatBook()
        self.published: dict[str, Snapshot] = {}
        self.metrics = Metrics()
        self.video = (
            VideoPublisher(
                self.video_subject,
                FrameEncoder(settings.video_fps, settings.video_max_dimension, settings.video_quality),
                settings.video_annotated,
                {"Entity-ID": settings.entity_id, "Device-ID": self.ident_device},
            )
            if settings.video
            else None
        )
        self.boot_id = uuid.uuid4().hex[:12]
        self.started_at = utc_now()
        self.nc: NATS | None = None
        self.sender: EventSender | None = None
        self.state: StateWriter | None = None
        self.source: Source | None = None
        self.slot: LatestFrame | None = None
        self._infer_pool = ThreadPoolExecutor(1, thread_name_prefix="infer")
        self.last_frame_shape = (480, 640)

    def _class_thresholds(self, by_label: dict[str, float]) -> np.ndarray:
        """Per class index: its publish threshold (``DETECT_CLASS_CONF`` over the general one)."""
        names = [n.lower() for n in self.detector.names]
        unknown = sorted(set(by_label) - set(names))
        if unknown:
            raise ModelError(f"DETECT_CLASS_CONF names {', '.join(map(repr, unknown))}, which the model does not know")
        return np.array([by_label.get(n, self.conf) for n in names], np.float32)

    def _on_state(self, doc: dict[str, Any] | None) -> None:
        """The entity's state as last read: follow its camera pose."""
        pose = resolve_pose(doc, self.pose_fallback)
        if pose != self.pose:
            log.info("camera pose %s", pose.as_dict() if pose else "unknown: objects are not placed on the map")
            self.pose = pose

    # ------------------------------------------------------------------ lifecycle

    async def run(self, stopping: asyncio.Event) -> int:
        """Connect, process until ``stopping`` is set or the source ends, shut down cleanly."""
        # The inference thread needs the GIL back the moment onnxruntime returns; with the
        # default 5 ms switch interval it can wait that long behind the event loop's work.
        sys.setswitchinterval(0.0005)
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
        self.source = (
            self.source_factory(self.slot)
            if self.source_factory
            else open_source(
                self.spec,
                self.slot,
                fps=self.settings.source_fps,
                stall_after=self.settings.stall_seconds,
                loop_file=self.settings.loop,
                every_frame=self.settings.every_frame,
            )
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
                    tls=ca_context(s.nats_tls_ca, s.nats_tls_verify_hostname) if s.nats_tls_ca else None,
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
        # Bound without STREAM.INFO, which device credentials do not have; one read of our
        # own key proves access (no key yet is fine: the first write creates it).
        kv = state_bucket(js)
        try:
            entry = await kv.get(self.settings.entity_id)
            with contextlib.suppress(ValueError):
                self._on_state(msgspec.json.decode(entry.value or b"{}"))
        except KeyNotFoundError:
            pass
        except Exception as exc:  # noqa: BLE001 - no KV access (permissions, other server): events only
            log.error("cannot bind %s (%s); publishing events only", topology.BUCKET_STATE, exc)
            return
        self.state = StateWriter(
            StateStore(kv, writer="detection"),
            self.settings.entity_id,
            self.settings.org_id,
            hz=self.settings.kv_hz,
            on_read=self._on_state,
        )

    async def _loop(self, stopping: asyncio.Event) -> None:
        assert self.slot is not None and self.source is not None
        loop = asyncio.get_running_loop()
        min_period = 1.0 / self.settings.max_fps if self.settings.max_fps > 0 else 0.0
        last_started = 0.0
        done: tuple[Frame, Detections] | None = None  # inferred, not yet tracked and published
        while not stopping.is_set():
            frame = await self.slot.take(timeout=0.5)
            if frame is None:
                if done is not None:
                    self._publish(*done)
                    done = None
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
            inferring = loop.run_in_executor(self._infer_pool, self.detector.detect, frame.image)
            if done is not None:
                # Track and publish the previous frame while this one is inferred (ORT releases the GIL).
                self._publish(*done)
            done = frame, await inferring
        if done is not None:
            self._publish(*done)

    def _publish(self, frame: Frame, det: Detections) -> None:
        started = time.perf_counter()
        self._publish_step(self._track(frame, det))
        self.metrics.frame_done(det.infer_ms, (time.perf_counter() - started) * 1000)

    async def _shutdown(self, sender_stop: asyncio.Event, sender_task: asyncio.Task[None]) -> None:
        if self.source is not None:
            await asyncio.to_thread(self.source.stop)
        if self.video is not None:
            await self.video.close()
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
        log.info(
            "stopped: %d frames processed, %d events published, %d state writes",
            self.metrics.processed,
            self.sender.published,
            self.state.writes if self.state else 0,
        )

    # ------------------------------------------------------------------ per frame

    def _track(self, frame: Frame, det: Detections) -> Step:
        """Tracker update on the event loop (its only owner), in frame order."""
        high_at = None  # per-detection thresholds; a class the names do not cover gets the general one
        if len(det.classes) and len(self.class_conf) and int(det.classes.max()) < len(self.class_conf):
            high_at = self.class_conf[det.classes]
        matched = self.tracker.update(det.xyxy, det.scores, det.classes, high_at)
        tracks = self.persistence.update(self.tracker.tracks, matched)
        # Publish only what clears its class's threshold now or did when it was first published.
        shown = [t for t in tracks if t.score > self._threshold(t.cls) or t.track_id in self.book.objects]
        return Step(
            frame,
            shown,
            [self.detector.label(t.cls) for t in shown],
            {t.track_id for t in self.tracker.removed},
            det.infer_ms,
        )

    def _threshold(self, cls: int) -> float:
        return float(self.class_conf[cls]) if 0 <= cls < len(self.class_conf) else self.conf

    def _publish_step(self, step: Step) -> None:
        frame = step.frame
        h, w = frame.image.shape[:2]
        self.last_frame_shape = (h, w)
        observed = self.book.observe(step.tracks, step.labels, w, h, frame.captured_at, frame.mono, self.pose)
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
                geo=obj.geo,
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
        if self.video is None or self.nc is None:
            return
        objects = self.book.active()
        banner = threats.alert_level([o.threat_level for o in objects])
        self.video.offer(self.nc, frame.image, frame.seq, frame.captured_at, objects, banner)

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
            "publish_ms_p50": round(float(np.median(m.loop_ms)), 2) if m.loop_ms else None,
            "events_published": sender.published if sender else 0,
            "events_failed": sender.failed if sender else 0,
            "events_dropped": sender.dropped if sender else 0,
            "events_buffered": sender.pending if sender else 0,
            "kv_writes": state.writes if state else 0,
            "kv_conflicts": state.conflicts if state else 0,
            "kv_failures": state.failures if state else 0,
            "video_frames": self.video.sent if self.video else 0,
            "nats_reconnects": m.nats_reconnects,
            "source_reconnects": src.reconnects if src else 0,
            "source_connected": bool(src and src.connected),
        }

    def scopes(self, stopping: bool = False) -> dict[str, Any]:
        """The owned EntityState scopes, as of now."""
        return entity_scopes(
            device_id=self.ident_device,
            started_at=self.started_at,
            model_type=self.detector.model_type,
            source=self.spec.label,
            book=self.book,
            threat_book=self.threats,
            pipeline=self.pipeline(),
            stopping=stopping,
        )

    def fingerprint(self) -> dict[str, Any]:
        """The device fingerprint sent with ``bootsequence``."""
        return fingerprint(self.settings, self.ident_device, self.spec, self.detector)
