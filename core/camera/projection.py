"""Pixels ↔ ground for a pinhole camera over a flat earth, and ground offsets ↔ latitude/longitude.

The assumption, stated once: **the ground is a horizontal plane** ``height_m`` below the
camera, and a detected object **stands on it at the bottom centre of its box** (its
ground contact point). Good on level ground out to a few hundred metres; wrong on
slopes, for objects whose bottom is hidden, and for anything in the air (airborne
classes are not projected). Square pixels, no lens distortion, the principal point at the
image centre; ``hfov_deg`` sets the focal length, the frame's aspect the vertical view.

Camera frame: x right, y down, z along the optical axis. World frame at the camera:
``right``/``forward`` level (forward = the heading), ``up``. East/north offsets turn into
latitude/longitude with the WGS84 radii of curvature at the camera (a local tangent
plane: under 1 cm of error at 200 m).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.camera.pose import CameraPose

WGS84_A = 6378137.0
WGS84_E2 = 6.69437999014e-3
# Things that fly: the bottom of their box is not where they touch the ground.
AIRBORNE = frozenset({"drone", "airplane", "bird", "kite", "helicopter", "balloon"})


@dataclass(frozen=True)
class Pinhole:
    """A level-mounted camera ``height_m`` above the ground, tilted ``tilt_deg`` down, ``width``×``height`` pixels."""

    height_m: float
    tilt_deg: float
    hfov_deg: float
    width: float
    height: float

    @property
    def focal(self) -> float:
        """Focal length in pixels (square pixels)."""
        return (self.width / 2) / math.tan(math.radians(self.hfov_deg) / 2)

    def pixel(self, right: float, forward: float, up: float = 0.0) -> tuple[float, float] | None:
        """The pixel (u, v) of a point ``up`` metres above the ground; None behind the camera."""
        t = math.radians(self.tilt_deg)
        dz = up - self.height_m  # height of the point relative to the camera
        zc = forward * math.cos(t) - dz * math.sin(t)
        if zc <= 1e-6:
            return None
        yc = -forward * math.sin(t) - dz * math.cos(t)
        return self.width / 2 + self.focal * right / zc, self.height / 2 + self.focal * yc / zc

    def ground(self, u: float, v: float) -> tuple[float, float] | None:
        """Where the ray through pixel (u, v) meets the ground: (right, forward) metres; None above the horizon."""
        t = math.radians(self.tilt_deg)
        a = (u - self.width / 2) / self.focal
        b = (v - self.height / 2) / self.focal
        down = b * math.cos(t) + math.sin(t)  # downward component of the ray (x, y, z) = (a, b, 1)
        if down <= 1e-9:
            return None
        s = self.height_m / down
        return s * a, s * (math.cos(t) - b * math.sin(t))


def enu(pose: CameraPose, right: float, forward: float) -> tuple[float, float]:
    """Camera-level (right, forward) metres → (east, north) metres by the heading."""
    h = math.radians(pose.heading_deg)
    return right * math.cos(h) + forward * math.sin(h), -right * math.sin(h) + forward * math.cos(h)


def offset_latlon(lat: float, lon: float, east: float, north: float) -> tuple[float, float]:
    """``lat, lon`` moved by ``east``/``north`` metres on the local tangent plane."""
    phi = math.radians(lat)
    w = 1 - WGS84_E2 * math.sin(phi) ** 2
    meridian = WGS84_A * (1 - WGS84_E2) / w**1.5
    normal = WGS84_A / math.sqrt(w)
    return lat + math.degrees(north / meridian), lon + math.degrees(east / (normal * max(math.cos(phi), 1e-9)))


def latlon_offset(lat0: float, lon0: float, lat: float, lon: float) -> tuple[float, float]:
    """(east, north) metres of ``lat, lon`` from ``lat0, lon0`` (inverse of ``offset_latlon``)."""
    phi = math.radians(lat0)
    w = 1 - WGS84_E2 * math.sin(phi) ** 2
    meridian = WGS84_A * (1 - WGS84_E2) / w**1.5
    normal = WGS84_A / math.sqrt(w)
    return math.radians(lon - lon0) * normal * math.cos(phi), math.radians(lat - lat0) * meridian


def pinhole(pose: CameraPose, aspect: float) -> Pinhole:
    """The pinhole of ``pose`` in normalised units (width 1, height 1/aspect)."""
    return Pinhole(pose.height_m, pose.tilt_deg, pose.hfov_deg, 1.0, 1.0 / aspect)


def project_box(
    pose: CameraPose, bbox: tuple[float, float, float, float], aspect: float, label: str = ""
) -> dict[str, float] | None:
    """The ground contact point of a normalised box (x1, y1, x2, y2): latitude, longitude, range and bearing.

    None for airborne labels, boxes whose bottom is above the horizon, and points past
    ten times the pose's ``max_range_m`` (a grazing ray says nothing useful).
    """
    if label.lower() in AIRBORNE:
        return None
    cam = pinhole(pose, aspect)
    hit = cam.ground((bbox[0] + bbox[2]) / 2, bbox[3] / aspect)
    if hit is None:
        return None
    right, forward = hit
    ground_range = math.hypot(right, forward)
    if ground_range > 10 * pose.max_range_m:
        return None
    east, north = enu(pose, right, forward)
    lat, lon = offset_latlon(pose.latitude, pose.longitude, east, north)
    return {
        "latitude": round(lat, 7),
        "longitude": round(lon, 7),
        "range_m": round(math.hypot(ground_range, pose.height_m), 1),
        "bearing_deg": round(math.degrees(math.atan2(east, north)) % 360, 1),
    }


def footprint(pose: CameraPose, aspect: float, samples: int = 8) -> list[tuple[float, float]]:
    """The field of view on the ground as a closed (lon, lat) ring, cut at ``max_range_m``.

    Border pixels are sampled clockwise; a ray above the horizon or beyond the range is
    replaced by the point at ``max_range_m`` in its direction, so a view reaching the
    horizon is drawn as a fan out to that range.
    """
    cam = pinhole(pose, aspect)
    w, h = 1.0, 1.0 / aspect
    border = (
        [(w * i / samples, 0.0) for i in range(samples)]
        + [(w, h * i / samples) for i in range(samples)]
        + [(w * (samples - i) / samples, h) for i in range(samples)]
        + [(0.0, h * (samples - i) / samples) for i in range(samples)]
    )
    ring: list[tuple[float, float]] = []
    for u, v in border:
        hit = cam.ground(u, v)
        azimuth = math.atan2((u - w / 2) / cam.focal, 1.0)  # the ray's direction, relative to the heading
        if hit is None or math.hypot(*hit) > pose.max_range_m:
            right, forward = pose.max_range_m * math.sin(azimuth), pose.max_range_m * math.cos(azimuth)
        else:
            right, forward = hit
        lat, lon = offset_latlon(pose.latitude, pose.longitude, *enu(pose, right, forward))
        ring.append((round(lon, 7), round(lat, 7)))
    ring.append(ring[0])
    return ring
