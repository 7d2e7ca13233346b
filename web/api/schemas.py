"""HTTP request and response bodies of the REST API."""

from __future__ import annotations

from typing import Any

import msgspec

from db.alerts import AlertFields


class DetectionView(msgspec.Struct, kw_only=True):
    """A stored detection event."""

    entity_id: str
    track_id: str
    label: str
    confidence: float
    threat_level: str
    event_type: str
    bbox: dict[str, Any]
    metadata: dict[str, Any]
    timestamp: str
    received_at: float


class AlertView(AlertFields, kw_only=True):
    """An alert as the API returns it (``data`` decoded)."""

    data: dict[str, Any]


class LiveEntity(msgspec.Struct, kw_only=True):
    """``GET /api/entities`` item (downstream PRD)."""

    entity_id: str
    org_id: str
    status: str
    is_live: bool
    active_objects: int
    updated_at: str


class TrackPointView(msgspec.Struct, kw_only=True):
    """One stored position (``ts`` = epoch seconds)."""

    ts: float
    latitude: float
    longitude: float
    altitude: float | None
    heading: float | None
    speed: float | None
