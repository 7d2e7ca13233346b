"""What the map draws for a camera: its field-of-view footprint and its tracked objects on the ground.

Both come from the camera entity's state view: the pose from ``camera`` (registry) and
telemetry (``core/camera/pose.resolve_pose``), the objects from their ground positions
(``detections.objects[*].geo``, projected by the detection worker, or ``position``). The
footprint assumes a 4:3 frame (the view does not say the video's shape; a wider frame
draws a slightly narrower fan than it sees).
"""

from __future__ import annotations

from typing import Any

from core.camera.pose import resolve_pose
from core.camera.projection import footprint
from core.contracts.state import threat_word
from services.state_view import EntityView

FRAME_ASPECT = 4 / 3


def camera_layer(view: EntityView | None) -> dict[str, Any] | None:
    """``{"footprint": [[lon, lat], …] | None, "objects": [...]}`` for a camera with a pose or placed objects."""
    if view is None:
        return None
    pose = resolve_pose(view.doc)
    objects = [
        {
            "id": obj.track_id,
            "label": obj.label,
            "threat": threat_word(obj.threat_level) or "LOW_THREAT",
            "lat": obj.latitude,
            "lon": obj.longitude,
        }
        for obj in view.objects
        if obj.is_active and obj.latitude is not None and obj.longitude is not None
    ]
    if pose is None and not objects:
        return None
    return {"footprint": [list(p) for p in footprint(pose, FRAME_ASPECT)] if pose else None, "objects": objects}
