"""Conversions from DB rows to API/template views."""

from __future__ import annotations

from typing import Any

import msgspec

from core.contracts.state import threat_word
from core.structs import as_view
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
    return as_view(
        row,
        DetectionView,
        threat_level=threat_word(row.threat_level) or "",  # rows stored before the seeds' words too
        bbox=_obj(row.bbox),
        metadata=_obj(row.metadata),
        timestamp=row.ts,
    )


def alert_view(row: AlertRow) -> AlertView:
    """API view of an alert."""
    return as_view(row, AlertView, data=_obj(row.data))
