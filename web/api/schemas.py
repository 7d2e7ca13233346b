"""HTTP request and response bodies of the REST API."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

import msgspec

from core.contracts.registry import (
    Affiliation,
    EntityStatusInput,
    EntityType,
    Id,
    Name,
    OrgType,
    Position,
    Priority,
    VideoConfig,
)

T = TypeVar("T")

Description = Annotated[str, msgspec.Meta(max_length=500)]


class OrgCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /api/v1/organizations``."""

    name: Name
    org_type: OrgType
    description: Description = ""
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    org_id: Id | None = None


class OrgUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``PUT /api/v1/organizations/{org_id}``: only the given fields change."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    org_type: OrgType | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType = msgspec.UNSET
    metadata: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


class EntityCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /api/v1/organizations/{org_id}/entities``."""

    entity_type: EntityType
    name: Annotated[str, msgspec.Meta(max_length=255)] = ""
    status: EntityStatusInput = "offline"
    priority: Priority = "normal"
    affiliation: Affiliation = "friend"
    position: Position | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    video_config: VideoConfig | None = None
    entity_id: Id | None = None


class EntityUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``PUT /api/v1/organizations/{org_id}/entities/{entity_id}``: only given fields change."""

    name: Annotated[str, msgspec.Meta(max_length=255)] | msgspec.UnsetType = msgspec.UNSET
    status: EntityStatusInput | msgspec.UnsetType = msgspec.UNSET
    priority: Priority | msgspec.UnsetType = msgspec.UNSET
    affiliation: Affiliation | msgspec.UnsetType = msgspec.UNSET
    position: Position | None | msgspec.UnsetType = msgspec.UNSET
    metadata: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    video_config: VideoConfig | None | msgspec.UnsetType = msgspec.UNSET
    entity_type: EntityType | msgspec.UnsetType = msgspec.UNSET


class Page(msgspec.Struct, Generic[T], kw_only=True):
    """A page of a list: ``items`` plus ``total``, ``limit``, ``offset``."""

    items: list[T]
    total: int
    limit: int
    offset: int


class Deleted(msgspec.Struct, kw_only=True):
    """Body of a successful DELETE."""

    message: str


class CommandCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST …/entities/{entity_id}/commands``."""

    command: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    ttl_s: Annotated[float, msgspec.Meta(gt=0, le=86400)] | None = None


class CommandView(msgspec.Struct, kw_only=True):
    """A command and its lifecycle state, as the API returns it."""

    command_id: str
    org_id: str
    entity_id: str
    command: str
    params: dict[str, Any]
    status: str
    detail: str
    issued_by: str
    issued_at: str
    updated_at: str
    expires_at: str
    delivered_at: str | None = None


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


class AlertView(msgspec.Struct, kw_only=True):
    """An alert as the API returns it."""

    alert_id: str
    kind: str
    severity: str
    org_id: str
    entity_id: str
    track_id: str
    title: str
    reason: str
    status: str
    acknowledged_by: str | None
    acknowledged_at: str | None
    created_at: str
    updated_at: str
    cleared_at: str | None
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
