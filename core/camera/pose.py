"""A camera's pose: where it stands, how high, where it looks, how wide — from configuration and telemetry.

Sources, field by field (``resolve_pose``):

* **entity configuration** — the registry record's ``metadata.camera`` object
  (``CameraConfig``), which the EntityWorker projects into the entity's state as
  ``camera``; or the detection worker's ``DETECT_CAMERA_POSE`` when the record has none;
* **telemetry** in the same state — ``position.global`` latitude/longitude move the
  camera with its platform; ``extras.gimbal`` (``yaw``/``pitch`` in degrees, earth frame,
  pitch negative down) points it. The platform's heading (``vfr.heading`` or attitude
  yaw) and ``altitude_relative`` only fill in a heading or a height the configuration
  does not give: a configured mast height is not replaced by a vehicle's
  altitude above its home point.

Angles are degrees: ``heading_deg`` clockwise from true north, ``tilt_deg`` below the
horizon (positive looks down), ``hfov_deg`` the horizontal field of view.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import msgspec

Lat = Annotated[float, msgspec.Meta(ge=-90, le=90)]
Lon = Annotated[float, msgspec.Meta(ge=-180, le=180)]
Height = Annotated[float, msgspec.Meta(gt=0, le=20_000)]
Heading = Annotated[float, msgspec.Meta(ge=-360, le=360)]
Tilt = Annotated[float, msgspec.Meta(ge=-90, le=90)]
Fov = Annotated[float, msgspec.Meta(ge=1, le=170)]
Range = Annotated[float, msgspec.Meta(gt=0, le=50_000)]
DEFAULT_MAX_RANGE_M = 200.0  # where the drawn footprint stops when the view reaches the horizon


class PoseError(ValueError):
    """A camera configuration that cannot be used (says which field and why)."""


class CameraConfig(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """``metadata.camera`` of an entity record: any subset; telemetry may supply the rest."""

    latitude: Lat | None = None
    longitude: Lon | None = None
    height_m: Height | None = None
    heading_deg: Heading | None = None
    tilt_deg: Tilt | None = None
    hfov_deg: Fov | None = None
    max_range_m: Range | None = None


class CameraPose(msgspec.Struct, frozen=True, kw_only=True):
    """A complete pose: everything the projection needs."""

    latitude: float
    longitude: float
    height_m: float
    heading_deg: float
    tilt_deg: float
    hfov_deg: float
    max_range_m: float = DEFAULT_MAX_RANGE_M

    def as_dict(self) -> dict[str, float]:
        """JSON-ready, rounded."""
        return {k: round(float(v), 7) for k, v in msgspec.structs.asdict(self).items()}


def camera_config(value: Any) -> CameraConfig:
    """Validate a ``metadata.camera`` object; ``PoseError`` names the field that is wrong."""
    if not isinstance(value, dict):
        raise PoseError("metadata.camera must be an object of pose fields")
    try:
        return msgspec.convert(value, CameraConfig)
    except msgspec.ValidationError as exc:
        raise PoseError(f"metadata.camera: {exc}") from None


def parse_pose_setting(text: str) -> CameraConfig:
    """``lat,lon,height_m,heading,tilt,hfov`` (the ``DETECT_CAMERA_POSE`` form)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 6:
        raise PoseError(f"{text!r}: expected lat,lon,height_m,heading,tilt,hfov (6 numbers)")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise PoseError(f"{text!r}: expected 6 numbers") from None
    keys = ("latitude", "longitude", "height_m", "heading_deg", "tilt_deg", "hfov_deg")
    return camera_config(dict(zip(keys, values, strict=True)))


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def resolve_pose(doc: dict[str, Any] | None, fallback: CameraConfig | None = None) -> CameraPose | None:
    """The pose of the entity whose state is ``doc`` (its ``camera`` scope and telemetry), or None if incomplete.

    An invalid ``camera`` scope counts as absent (the registry refuses invalid ones, so
    this only guards against other writers).
    """
    doc = doc or {}
    try:
        config = camera_config(doc["camera"]) if isinstance(doc.get("camera"), dict) else None
    except PoseError:
        config = None
    config = config or fallback or CameraConfig()
    pos = _dict(_dict(doc.get("position")).get("global"))
    gimbal = _dict(_dict(doc.get("extras")).get("gimbal"))
    vfr_heading = _num(_dict(doc.get("vfr")).get("heading"))
    yaw = _num(_dict(_dict(doc.get("attitude")).get("euler")).get("yaw"))
    platform_heading = vfr_heading if vfr_heading is not None else (math.degrees(yaw) if yaw is not None else None)
    lat, lon = _num(pos.get("latitude")), _num(pos.get("longitude"))
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        lat, lon = config.latitude, config.longitude
    height = config.height_m if config.height_m is not None else _num(pos.get("altitude_relative"))
    heading = _num(gimbal.get("yaw"))
    if heading is None:
        heading = config.heading_deg if config.heading_deg is not None else platform_heading
    pitch = _num(gimbal.get("pitch"))
    tilt = -pitch if pitch is not None else config.tilt_deg
    values = (lat, lon, height, heading, tilt, config.hfov_deg)
    if any(v is None for v in values) or (height or 0) <= 0:
        return None
    assert lat is not None and lon is not None and height is not None and heading is not None
    assert tilt is not None and config.hfov_deg is not None
    return CameraPose(
        latitude=lat,
        longitude=lon,
        height_m=height,
        heading_deg=heading % 360,
        tilt_deg=max(-90.0, min(90.0, tilt)),
        hfov_deg=config.hfov_deg,
        max_range_m=config.max_range_m or DEFAULT_MAX_RANGE_M,
    )
