"""The typed view of one entity's EntityState, decoded once per KV revision.

The state cache merges an entity's root value with its dotted sub-keys and builds one
``EntityView`` from the result each time either changes. Every reader that interprets
state — console cards and overlays, rules, liveness, the CoT picture, metrics — reads
these typed fields instead of walking ``dict[str, Any]`` and coercing values itself.
Device values are untrusted: a field of the wrong type, a NaN or an infinity reads as
missing (``None``), never as an error. ``doc`` keeps the merged document as stored, for
the places that show it verbatim (the API's live entity, the KV browser).
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from core.timefmt import epoch_ms, parse_time


def number(value: Any) -> float | None:
    """A finite number from a device value; ``None`` for anything else (bools included)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    result = float(value)
    return result if math.isfinite(result) else None


def mapping(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def text(value: Any, default: str = "") -> str:
    """A string field; numbers are shown as they are, anything else reads as ``default``."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return default


class Box(msgspec.Struct, frozen=True, kw_only=True):
    """A detection box in frame coordinates (``x_min``/``x1`` spellings both read)."""

    x_min: float
    y_min: float
    x_max: float
    y_max: float


class TrackedObject(msgspec.Struct, frozen=True, kw_only=True):
    """One object of ``detections.objects``."""

    key: str
    track_id: str
    label: str
    confidence: float | None
    threat_level: str  # as stored; ``threat_word`` reads older words
    box: Box | None
    last_seen: str
    is_active: bool = True
    latitude: float | None = None  # a geolocated object (``position`` or ``geo``)
    longitude: float | None = None
    altitude: float | None = None
    raw: dict[str, Any] = msgspec.field(default_factory=dict)


class ThreatAlert(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of ``c4isr.threat_intelligence.threat_alerts``."""

    alert_type: str
    reason: str
    track_id: str = ""
    label: str = ""
    confidence: float | None = None


class EntityView(msgspec.Struct, frozen=True, kw_only=True):
    """Everything readers interpret about one entity, typed; ``doc`` is the merged document."""

    entity_id: str
    org_id: str
    revision: int
    entity_type: str
    name: str
    status: str  # as stored (``status_word`` maps it for display)
    is_live: bool
    last_seen: str
    updated_at: str
    last_seen_ms: int
    last_seen_s: float | None  # epoch seconds of last_seen (or updated_at); None when unknown
    reported_s: float | None  # epoch seconds of last_seen alone (None: the entity never reported)
    priority: str
    affiliation: Any
    cot_type: str
    stale: str  # ``extras.stale`` of CoT-fed entities
    latitude: float | None
    longitude: float | None
    altitude_msl: float | None
    altitude_relative: float | None
    accuracy_h: float | None
    accuracy_v: float | None
    speed: float | None
    heading: float | None  # vfr.heading, else attitude yaw in degrees
    course: float | None  # vfr.heading only
    yaw: float | None  # radians, as stored
    battery: float | None
    voltage: float | None
    mode: str
    armed: bool | None
    objects: tuple[TrackedObject, ...]
    active_objects: float | None  # analytics.summary.active_objects_count
    alert_level: str
    total_threats: float | None
    threat_alerts: tuple[ThreatAlert, ...]
    last_command: str
    last_command_status: str
    pipeline: dict[str, Any]  # analytics.pipeline (detector figures for metrics)
    doc: dict[str, Any]

    @property
    def altitude(self) -> float | None:
        """Height shown on cards: relative when known, else MSL."""
        return self.altitude_relative if self.altitude_relative is not None else self.altitude_msl


def _box(raw: dict[str, Any]) -> Box | None:
    box = mapping(raw.get("current_bbox") or raw.get("bbox"))
    corners = (
        number(box.get("x_min", box.get("x1"))),
        number(box.get("y_min", box.get("y1"))),
        number(box.get("x_max", box.get("x2"))),
        number(box.get("y_max", box.get("y2"))),
    )
    if any(c is None for c in corners):
        return None
    x0, y0, x1, y1 = (c or 0.0 for c in corners)
    return Box(x_min=x0, y_min=y0, x_max=x1, y_max=y1)


def _object(key: str, value: Any) -> TrackedObject:
    raw = mapping(value)
    where = mapping(raw.get("position")) or mapping(raw.get("geo"))
    return TrackedObject(
        key=key,
        track_id=text(raw.get("track_id")) or key,
        label=text(raw.get("label")) or "object",
        confidence=number(raw.get("confidence")),
        threat_level=text(raw.get("threat_level")),
        box=_box(raw),
        last_seen=text(raw.get("last_seen")),
        is_active=raw.get("is_active") is not False,
        latitude=number(where.get("latitude", where.get("lat"))),
        longitude=number(where.get("longitude", where.get("lon"))),
        altitude=number(where.get("altitude", where.get("alt"))),
        raw=raw,
    )


def entity_view(entity_id: str, org_id: str, doc: dict[str, Any], revision: int = 0) -> EntityView:
    """Decode the merged document of one entity into its typed view (never raises)."""
    pos = mapping(mapping(doc.get("position")).get("global"))
    vfr = mapping(doc.get("vfr"))
    power = mapping(doc.get("power"))
    vehicle = mapping(doc.get("vehicle_status"))
    euler = mapping(mapping(doc.get("attitude")).get("euler"))
    yaw = number(euler.get("yaw"))
    course = number(vfr.get("heading"))
    heading = course if course is not None else ((math.degrees(yaw) + 360) % 360 if yaw is not None else None)
    intel = mapping(mapping(doc.get("c4isr")).get("threat_intelligence"))
    summary = mapping(intel.get("threat_summary"))
    raw_alerts = intel.get("threat_alerts")
    alerts = tuple(
        ThreatAlert(
            alert_type=text(a.get("alert_type")),
            reason=text(a.get("reason")),
            track_id=text(a.get("track_id")),
            label=text(a.get("label")),
            confidence=number(a.get("confidence")),
        )
        for a in (raw_alerts if isinstance(raw_alerts, list) else [])
        if isinstance(a, dict)
    )
    analytics = mapping(doc.get("analytics"))
    recent = mapping(doc.get("commands")).get("recent")
    last = mapping(recent[0]) if isinstance(recent, list) and recent else {}
    seen = doc.get("last_seen") or doc.get("updated_at")
    when = parse_time(seen)
    extras = mapping(doc.get("extras"))
    armed = vehicle.get("armed")
    return EntityView(
        entity_id=entity_id,
        org_id=org_id,
        revision=revision,
        entity_type=text(doc.get("entity_type")),
        name=text(doc.get("name")) or entity_id,
        status=text(doc.get("status")),
        is_live=doc.get("is_live") is True,
        last_seen=text(seen),
        updated_at=text(doc.get("updated_at")),
        last_seen_ms=epoch_ms(seen),
        last_seen_s=when.timestamp() if when else None,
        reported_s=reported.timestamp() if (reported := parse_time(doc.get("last_seen"))) else None,
        priority=text(doc.get("priority")) or "normal",
        affiliation=doc.get("affiliation"),
        cot_type=text(mapping(extras.get("cot")).get("type")),
        stale=text(extras.get("stale")),
        latitude=number(pos.get("latitude")),
        longitude=number(pos.get("longitude")),
        altitude_msl=number(pos.get("altitude_msl")),
        altitude_relative=number(pos.get("altitude_relative")),
        accuracy_h=number(pos.get("accuracy_h")),
        accuracy_v=number(pos.get("accuracy_v")),
        speed=number(vfr.get("groundspeed")),
        heading=heading,
        course=course,
        yaw=yaw,
        battery=number(power.get("battery_remaining")),
        voltage=number(power.get("voltage")),
        mode=text(vehicle.get("mode")) or text(mapping(doc.get("mission")).get("mode")),
        armed=armed if isinstance(armed, bool) else None,
        objects=tuple(_object(str(k), v) for k, v in mapping(mapping(doc.get("detections")).get("objects")).items()),
        active_objects=number(mapping(analytics.get("summary")).get("active_objects_count")),
        alert_level=text(summary.get("alert_level")) or "NORMAL",
        total_threats=number(summary.get("total_threats")),
        threat_alerts=alerts,
        last_command=text(last.get("command")),
        last_command_status=text(last.get("status")),
        pipeline=mapping(analytics.get("pipeline")),
        doc=doc,
    )
