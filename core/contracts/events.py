"""NATS event payloads: entity lifecycle, detection (PRD envelope), liveness events."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from core.contracts.state import BBox

LifecycleType = Literal["created", "updated", "deleted", "status", "status_changed"]


class LifecycleData(msgspec.Struct, kw_only=True):
    """``data`` of an entity lifecycle event."""

    entity_id: str
    org_id: str | None = None
    entity_type: str | None = None
    status: str | None = None
    priority: str | None = None
    is_live: bool | None = None
    name: str | None = None
    entity: dict[str, Any] | None = None


class EntityLifecycleEvent(msgspec.Struct, kw_only=True):
    """``constellation.entities.{org_id}.{kind}`` (same shape as the upstream server's)."""

    id: str
    type: LifecycleType
    data: LifecycleData
    timestamp: str
    source: str = "overwatch"
    subject: str | None = None


class DetectionMetadata(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Model-specific detection metadata (extra keys are preserved by writers)."""

    native_id: int | None = None
    threat_level: str | None = None
    suspicious_indicators: list[str] | None = None
    frame_count: int | None = None
    avg_confidence: float | None = None
    event_reason: str | None = None


class Detection(msgspec.Struct, kw_only=True):
    """``detection`` object of the PRD envelope."""

    track_id: str
    model_type: str
    label: str
    confidence: float
    bbox: BBox
    timestamp: str
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class DetectionEvent(msgspec.Struct, kw_only=True):
    """The PRD detection envelope; ``org_id`` is accepted as an alias of ``organization_id``."""

    timestamp: str
    event_type: str
    entity_id: str
    device_id: str = ""
    organization_id: str | None = None
    org_id: str | None = None
    detection: Detection | None = None

    @property
    def organization(self) -> str:
        """The organisation id from either spelling."""
        return self.organization_id or self.org_id or ""


class EventSource(msgspec.Struct, kw_only=True):
    """``source`` of a liveness event."""

    entity_id: str | None = None
    device_id: str | None = None


class GenericEvent(msgspec.Struct, kw_only=True):
    """Any event on ``constellation.events.>``: bootsequence, shutdown, detection, alert ..."""

    event_type: str
    timestamp: str | None = None
    entity_id: str | None = None
    device_id: str | None = None
    organization_id: str | None = None
    org_id: str | None = None
    source: EventSource | None = None
    message: str | None = None

    def resolve_entity_id(self) -> str:
        """``entity_id``, else ``source.entity_id``, else ``device_id``, else ``source.device_id``."""
        src = self.source or EventSource()
        return self.entity_id or src.entity_id or self.device_id or src.device_id or ""
