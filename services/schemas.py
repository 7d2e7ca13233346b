"""Inputs and outputs of the registry and command services (the REST API maps to these)."""


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
