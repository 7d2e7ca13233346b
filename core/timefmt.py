"""Timestamps as the contracts carry them (ISO 8601 strings, ``Z`` allowed) turned into datetimes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def parse_time(value: Any) -> datetime | None:
    """Parse an ISO 8601 string (``Z`` allowed) or pass a datetime through."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not value or not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def epoch_ms(value: Any) -> int:
    """Milliseconds since the epoch for an ISO timestamp (0 when missing)."""
    when = parse_time(value)
    return int(when.timestamp() * 1000) if when else 0
