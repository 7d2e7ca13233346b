"""Conversions from DB rows to API/template views."""

from __future__ import annotations

from typing import Any

import msgspec

from core.contracts.state import threat_word
from db.alerts import AlertRow
from db.detections import DetectionRow
from web.api.schemas import AlertView, DetectionView


def _obj(text: str) -> dict[str, Any]:
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def detection_view(row: DetectionRow) -> DetectionView:
    """API view of a stored detection."""
    return DetectionView(
        entity_id=row.entity_id,
        track_id=row.track_id,
        label=row.label,
        confidence=row.confidence,
        threat_level=threat_word(row.threat_level) or "",  # rows stored before the seeds' words too
        event_type=row.event_type,
        bbox=_obj(row.bbox),
        metadata=_obj(row.metadata),
        timestamp=row.ts,
        received_at=row.received_at,
    )


def alert_view(row: AlertRow) -> AlertView:
    """API view of an alert."""
    return AlertView(
        alert_id=row.alert_id,
        kind=row.kind,
        severity=row.severity,
        org_id=row.org_id,
        entity_id=row.entity_id,
        track_id=row.track_id,
        title=row.title,
        reason=row.reason,
        status=row.status,
        acknowledged_by=row.acknowledged_by,
        acknowledged_at=row.acknowledged_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        cleared_at=row.cleared_at,
        data=_obj(row.data),
    )
