"""The operating picture as CoT: an entity's merged state view → its CoT events.

One event for the entity (if it has a position) and one for each tracked object that
has a ground position in ``detections.objects[*].position`` (``latitude``,
``longitude``, optional ``altitude``) — written by a detector that geolocates what it
tracks. Objects are affiliated by their threat level and go stale on their own.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from services.cot.event import UNKNOWN_ERROR, CotEvent
from services.cot.types import affiliation_of, cot_type, object_cot_type

MAX_OBJECTS = 50  # tracked-object markers per entity and update


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def epoch(value: Any) -> float | None:
    """An ISO 8601 time (``Z`` allowed; naive means UTC) as epoch seconds, or ``None``."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _position(pos: dict[str, Any]) -> tuple[float, float] | None:
    lat, lon = _num(pos.get("latitude")), _num(pos.get("longitude"))
    if lat is None or lon is None or not -90 <= lat <= 90 or not -180 <= lon <= 180:
        return None
    return lat, lon


def remarks(view: dict[str, Any]) -> str:
    """``status: active; battery: 78%; mode: AUTO`` (what is known)."""
    parts = [f"status: {view.get('status') or 'unknown'}"]
    battery = _num(_dict(view.get("power")).get("battery_remaining"))
    if battery is not None:
        parts.append(f"battery: {battery:.0f}%")
    mode = _dict(view.get("vehicle_status")).get("mode") or _dict(view.get("mission")).get("mode")
    if mode:
        parts.append(f"mode: {str(mode)[:40]}")
    return "; ".join(parts)


def entity_events(view: dict[str, Any], stale_s: float, now: float, video_url: str = "") -> list[CotEvent]:
    """The CoT events of one entity's view: itself, then its geolocated tracked objects.

    A live entity is valid for ``stale_s`` (the offline timeout); an offline one is sent
    already stale, so tablets grey it out at once.
    """
    out: list[CotEvent] = []
    entity_id = str(view.get("entity_id") or "")
    glob = _dict(_dict(view.get("position")).get("global"))
    where = _position(glob)
    live = bool(view.get("is_live"))
    if where is not None and entity_id:
        vfr = _dict(view.get("vfr"))
        yaw = _num(_dict(_dict(view.get("attitude")).get("euler")).get("yaw"))
        course = _num(vfr.get("heading"))
        if course is None and yaw is not None:
            course = (math.degrees(yaw) + 360) % 360
        hae = _num(glob.get("altitude_msl"))
        out.append(
            CotEvent(
                uid=entity_id,
                type=cot_type(str(view.get("entity_type") or ""), affiliation_of(view.get("affiliation"))),
                how="m-g",
                time=now,
                start=now,
                stale=now + stale_s if live else now,
                lat=where[0],
                lon=where[1],
                hae=hae if hae is not None else UNKNOWN_ERROR,
                ce=_num(glob.get("accuracy_h")) or UNKNOWN_ERROR,
                le=_num(glob.get("accuracy_v")) or UNKNOWN_ERROR,
                callsign=str(view.get("name") or entity_id)[:120],
                course=course,
                speed=_num(vfr.get("groundspeed")),
                battery=_num(_dict(view.get("power")).get("battery_remaining")),
                remarks=remarks(view),
                video_url=video_url,
                ours=True,
            )
        )
    objects = _dict(_dict(view.get("detections")).get("objects"))
    for key, raw in list(objects.items())[:MAX_OBJECTS]:
        obj = _dict(raw)
        spot = _position(_dict(obj.get("position")))
        if spot is None or obj.get("is_active") is False:
            continue
        seen_at = epoch(obj.get("last_seen")) or now
        label = str(obj.get("label") or "object")
        threat = str(obj.get("threat_level") or "NORMAL")
        alt = _num(_dict(obj.get("position")).get("altitude"))
        confidence = _num(obj.get("confidence")) or 0.0
        out.append(
            CotEvent(
                uid=f"{entity_id}.{obj.get('track_id') or key}"[:200],
                type=object_cot_type(label, threat),
                how="m-p",  # machine, projected (from a camera's pose and the box)
                time=now,
                start=seen_at,
                stale=max(seen_at + stale_s, now) if live else now,
                lat=spot[0],
                lon=spot[1],
                hae=alt if alt is not None else UNKNOWN_ERROR,
                callsign=f"{label} ({threat.replace('_', ' ').lower()})"[:120],
                remarks=f"tracked by {view.get('name') or entity_id}; confidence {confidence:.2f}",
                ours=True,
            )
        )
    return out
