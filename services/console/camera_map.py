"""What the map draws for a camera: its field-of-view footprint and its tracked objects on the ground.

Both come from the camera entity's state view: the pose from ``camera`` (registry) and
telemetry (``app/camera/pose.resolve_pose``), the objects from ``detections.objects[*].geo``
(projected by the detection worker). The footprint assumes a 4:3 frame (the view does not
say the video's shape; a wider frame draws a slightly narrower fan than it sees).
"""

from __future__ import annotations

from typing import Any

from core.camera.pose import resolve_pose
from core.camera.projection import footprint
from core.contracts.state import threat_word

FRAME_ASPECT = 4 / 3


def camera_layer(view: dict[str, Any] | None) -> dict[str, Any] | None:
    """``{"footprint": [[lon, lat], …] | None, "objects": [...]}`` for a camera with a pose or placed objects."""
    if not view:
        return None
    pose = resolve_pose(view)
    raw = (view.get("detections") or {}).get("objects") if isinstance(view.get("detections"), dict) else None
    objects = []
    for key, obj in (raw or {}).items() if isinstance(raw, dict) else ():
        geo = obj.get("geo") if isinstance(obj, dict) else None
        if not isinstance(geo, dict) or not all(isinstance(geo.get(k), int | float) for k in ("latitude", "longitude")):
            continue
        objects.append(
            {
                "id": str(obj.get("track_id") or key),
                "label": str(obj.get("label") or "object"),
                "threat": threat_word(obj.get("threat_level")) or "LOW_THREAT",
                "lat": float(geo["latitude"]),
                "lon": float(geo["longitude"]),
            }
        )
    if pose is None and not objects:
        return None
    return {
        "footprint": [list(p) for p in footprint(pose, FRAME_ASPECT)] if pose else None,
        "objects": objects,
    }
