"""Tracked objects' lifecycle and grades: active → lost → removed, with the KV ``detections``/``analytics`` views.

An object is *active* while its track is matched; when it has not been seen for
``lost_after`` seconds it is *lost* — it leaves the KV state, its threat alert clears
and a ``lost`` event goes out. If the tracker re-finds it before dropping the track it
becomes active again under the same id; once the tracker drops the track it is
*removed* and forgotten. Memory is bounded by what is on screen, never by history.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from core.camera.pose import CameraPose
from core.camera.projection import project_box
from workers.detect import threats
from workers.detect.tracker import Track

CONFIDENCE_SMOOTHING = 0.3  # EMA weight of the newest frame's score


@dataclass(eq=False)
class TrackedObject:
    """One object as the worker publishes it."""

    track_id: str
    native_id: int
    label: str
    threat_level: str
    first_seen: str
    last_seen: str
    last_seen_at: float  # monotonic seconds
    confidence: float
    bbox: tuple[float, float, float, float]  # normalised x_min, y_min, x_max, y_max
    frame_count: int = 1
    conf_sum: float = 0.0
    state: str = "active"  # active | lost
    seq: int = 0  # events published for this object (for Nats-Msg-Id)
    indicators: list[str] = field(default_factory=list)
    geo: dict[str, float] | None = None  # projected ground contact point (camera pose known)

    @property
    def avg_confidence(self) -> float:
        """Mean confidence over the frames it was seen in."""
        return self.conf_sum / max(self.frame_count, 1)

    @property
    def centre(self) -> tuple[float, float]:
        """Normalised bbox centre."""
        return (self.bbox[0] + self.bbox[2]) / 2, (self.bbox[1] + self.bbox[3]) / 2

    def as_scope(self) -> dict[str, Any]:
        """The ``detections.objects`` entry (KV spec field names)."""
        x1, y1, x2, y2 = self.bbox
        return {
            "track_id": self.track_id,
            "label": self.label,
            "confidence": round(self.confidence, 4),
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "frame_count": self.frame_count,
            "avg_confidence": round(self.avg_confidence, 4),
            "is_active": self.state == "active",
            "threat_level": self.threat_level,
            "suspicious_indicators": list(self.indicators),
            "area": round(max(0.0, x2 - x1) * max(0.0, y2 - y1), 5),
            "current_bbox": {
                "x_min": round(x1, 4),
                "y_min": round(y1, 4),
                "x_max": round(x2, 4),
                "y_max": round(y2, 4),
            },
            # Not in the KV spec: readers that follow it ignore the extra field.
            **({"geo": self.geo} if self.geo else {}),
        }


class ObjectBook:
    """Objects keyed by track id, graded by the threat table."""

    def __init__(self, table: dict[str, str], lost_after: float = 2.0) -> None:
        self.table = table
        self.lost_after = lost_after
        self.objects: dict[str, TrackedObject] = {}
        self.total_unique = 0
        self.frames = 0
        self._native = 0

    def grade(self, label: str) -> str:
        """The threat level of a label."""
        return self.table.get(label.lower(), threats.DEFAULT_LEVEL)

    def observe(
        self,
        tracks: list[Track],
        labels: list[str],
        width: int,
        height: int,
        now: str,
        mono: float,
        pose: CameraPose | None = None,
    ) -> list[tuple[TrackedObject, bool]]:
        """Update from one frame's matched tracks; (object, came back from lost) pairs.

        With the camera's ``pose``, each object's ground contact point is projected (``geo``).
        """
        self.frames += 1
        out: list[tuple[TrackedObject, bool]] = []
        for track, label in zip(tracks, labels, strict=True):
            x1, y1, x2, y2 = (float(v) for v in track.xyxy)
            bbox = (
                min(max(x1 / width, 0.0), 1.0),
                min(max(y1 / height, 0.0), 1.0),
                min(max(x2 / width, 0.0), 1.0),
                min(max(y2 / height, 0.0), 1.0),
            )
            level = self.grade(label)
            obj = self.objects.get(track.track_id)
            returned = False
            if obj is None:
                self._native += 1
                self.total_unique += 1
                obj = TrackedObject(track.track_id, self._native, label, level, now, now, mono, track.score, bbox)
                obj.conf_sum = track.score
                self.objects[track.track_id] = obj
            else:
                returned = obj.state == "lost"
                obj.state = "active"
                obj.label, obj.threat_level, obj.bbox = label, level, bbox
                # Smoothed: a walking figure's score swings ±0.1 frame to frame, which would
                # otherwise fire a confidence_changed event (and flicker indicators) every frame.
                obj.confidence += CONFIDENCE_SMOOTHING * (track.score - obj.confidence)
                obj.frame_count += 1
                obj.conf_sum += track.score
                obj.last_seen, obj.last_seen_at = now, mono
            obj.indicators = threats.indicators(level, obj.confidence)
            obj.geo = project_box(pose, obj.bbox, width / height, label) if pose else None
            out.append((obj, returned))
        return out

    def sweep(self, mono: float, removed_track_ids: set[str]) -> tuple[list[TrackedObject], list[TrackedObject]]:
        """(newly lost, removed) objects: unseen for ``lost_after`` s, or dropped by the tracker."""
        lost: list[TrackedObject] = []
        removed: list[TrackedObject] = []
        for track_id, obj in list(self.objects.items()):
            if track_id in removed_track_ids:
                del self.objects[track_id]
                removed.append(obj)
                if obj.state == "active":
                    obj.state = "lost"
                    lost.append(obj)
            elif obj.state == "active" and mono - obj.last_seen_at > self.lost_after:
                obj.state = "lost"
                lost.append(obj)
        return lost, removed

    def active(self) -> list[TrackedObject]:
        """Objects currently in view."""
        return [o for o in self.objects.values() if o.state == "active"]

    def analytics(self) -> dict[str, Any]:
        """The C4ISR analytics dict (over active objects)."""
        active = self.active()
        threat_distribution = dict.fromkeys(threats.LEVELS, 0)  # always the three levels (PRD)
        for o in active:
            threat_distribution[o.threat_level] = threat_distribution.get(o.threat_level, 0) + 1
        return {
            "total_unique_objects": self.total_unique,
            "total_frames_processed": self.frames,
            "active_objects_count": len(active),
            "tracked_objects_count": len(self.objects),
            "label_distribution": dict(Counter(o.label for o in active)),
            "threat_distribution": threat_distribution,
            "active_threat_count": sum(threat_distribution[level] for level in threats.ALERTING),
            "active_track_ids": [o.track_id for o in active],
        }
