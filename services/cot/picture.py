"""The operating picture as CoT: an entity's merged state view → its CoT events.

One event for the entity (if it has a position) and one for each tracked object that
has a ground position in ``detections.objects[*].position`` (``latitude``,
``longitude``, optional ``altitude``) — written by a detector that geolocates what it
tracks. Objects are affiliated by their threat level and go stale on their own.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from services.cot.event import UNKNOWN_ERROR, CotEvent
from services.cot.types import affiliation_of, cot_type, object_cot_type
from services.state_view import EntityView

MAX_OBJECTS = 50  # tracked-object markers per entity and update


def epoch(value: Any) -> float | None:
    """An ISO 8601 time (``Z`` allowed; naive means UTC) as epoch seconds, or ``None``."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _position(lat: float | None, lon: float | None) -> tuple[float, float] | None:
    if lat is None or lon is None or not -90 <= lat <= 90 or not -180 <= lon <= 180:
        return None
    return lat, lon


def remarks(view: EntityView) -> str:
    """``status: active; battery: 78%; mode: AUTO`` (what is known)."""
    parts = [f"status: {view.status or 'unknown'}"]
    if view.battery is not None:
        parts.append(f"battery: {view.battery:.0f}%")
    if view.mode:
        parts.append(f"mode: {view.mode[:40]}")
    return "; ".join(parts)


def entity_events(view: EntityView, stale_s: float, now: float, video_url: str = "") -> list[CotEvent]:
    """The CoT events of one entity's view: itself, then its geolocated tracked objects.

    A live entity is valid for ``stale_s`` (the offline timeout); an offline one is sent
    already stale, so tablets grey it out at once.
    """
    out: list[CotEvent] = []
    entity_id = view.entity_id
    where = _position(view.latitude, view.longitude)
    live = view.is_live
    if where is not None and entity_id:
        out.append(
            CotEvent(
                uid=entity_id,
                type=cot_type(view.entity_type, affiliation_of(view.affiliation)),
                how="m-g",
                time=now,
                start=now,
                stale=now + stale_s if live else now,
                lat=where[0],
                lon=where[1],
                hae=view.altitude_msl if view.altitude_msl is not None else UNKNOWN_ERROR,
                ce=view.accuracy_h or UNKNOWN_ERROR,
                le=view.accuracy_v or UNKNOWN_ERROR,
                callsign=view.name[:120],
                course=view.heading,
                speed=view.speed,
                battery=view.battery,
                remarks=remarks(view),
                video_url=video_url,
                ours=True,
            )
        )
    for obj in view.objects[:MAX_OBJECTS]:
        spot = _position(obj.latitude, obj.longitude)
        if spot is None or not obj.is_active:
            continue
        seen_at = epoch(obj.last_seen) or now
        threat = obj.threat_level or "NORMAL"
        confidence = obj.confidence or 0.0
        out.append(
            CotEvent(
                uid=f"{entity_id}.{obj.track_id}"[:200],
                type=object_cot_type(obj.label, threat),
                how="m-p",  # machine, projected (from a camera's pose and the box)
                time=now,
                start=seen_at,
                stale=max(seen_at + stale_s, now) if live else now,
                lat=spot[0],
                lon=spot[1],
                hae=obj.altitude if obj.altitude is not None else UNKNOWN_ERROR,
                callsign=f"{obj.label} ({threat.replace('_', ' ').lower()})"[:120],
                remarks=f"tracked by {view.name}; confidence {confidence:.2f}",
                ours=True,
            )
        )
    return out
