"""What the detection worker reports: pipeline counters, its EntityState scopes, its fingerprint."""

from __future__ import annotations

import hashlib
import platform
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from core import __version__
from core.contracts.common import utc_now
from workers.detect import threats
from workers.detect.config import DetectSettings
from workers.detect.model import Detector
from workers.detect.objects import ObjectBook
from workers.detect.sources import SourceSpec


def device_id_for(entity_id: str) -> str:
    """A device id stable across restarts: machine id (or host and MAC) and the entity, hashed."""
    try:
        machine = Path("/etc/machine-id").read_text().strip()
    except OSError:
        machine = ""
    basis = machine or f"{socket.gethostname()}-{uuid.getnode():012x}-{platform.machine()}"
    return hashlib.sha256(f"{basis}-{entity_id}".encode()).hexdigest()[:16]


class Metrics:
    """Pipeline counters, reported in ``analytics.pipeline`` and the logs."""

    def __init__(self) -> None:
        self.processed = 0
        self.skipped = 0
        self.infer_ms: list[float] = []
        self.loop_ms: list[float] = []
        self.nats_reconnects = 0
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


def entity_scopes(
    *,
    device_id: str,
    started_at: str,
    model_type: str,
    source: str,
    book: ObjectBook,
    threat_book: threats.ThreatBook,
    pipeline: dict[str, Any],
    stopping: bool = False,
) -> dict[str, Any]:
    """The worker's EntityState scopes (``detections``, ``analytics``, ``c4isr``, ``mission``) as of now;
    ``stopping`` reports the final state: not live, no objects, no alerts."""
    now = utc_now()
    objects = [] if stopping else book.active()
    analytics = book.analytics()
    if stopping:
        analytics.update(
            active_objects_count=0,
            threat_distribution=dict.fromkeys(threats.LEVELS, 0),
            active_threat_count=0,
            active_track_ids=[],
        )
    levels = [o.threat_level for o in objects]
    distribution = analytics["threat_distribution"]
    return {
        "device_id": device_id,
        "is_live": not stopping,
        "mission": {
            "mode": "c4isr",
            "status": "stopped" if stopping else "operational",
            "started_at": started_at,
            "model": model_type,
            "source": source,
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
            "pipeline": pipeline,
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
                "threat_alerts": [] if stopping else threat_book.scope(),
            },
        },
    }


def fingerprint(settings: DetectSettings, device_id: str, spec: SourceSpec, detector: Detector) -> dict[str, Any]:
    """The device fingerprint sent with ``bootsequence``."""
    return {
        "organization_id": settings.org_id,
        "entity_id": settings.entity_id,
        "device_id": device_id,
        "hostname": socket.gethostname(),
        "platform": {
            "system": platform.system(),
            "release": platform.release(),
            "machine": platform.machine(),
            "python_version": platform.python_version(),
        },
        "camera": {"source": spec.label, "kind": spec.kind},
        "component": {
            "name": "constellation-isr",
            "type": detector.model_type,
            "version": __version__,
            **detector.info(),
            "mode": "c4isr",
        },
        "fingerprinted_at": utc_now(),
    }
