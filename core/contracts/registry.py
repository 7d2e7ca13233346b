"""Registry records stored in the ``CONSTELLATION_REGISTRY`` KV bucket (source of truth).

Keys: ``org.{org_id}`` → ``OrgRecord``, ``entity.{entity_id}`` → ``EntityRecord``.
Each node's EntityWorker projects them into SQLite; API writes go here first.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from core.contracts.common import ID_PATTERN

OrgType = Literal["military", "civilian", "commercial", "ngo"]
EntityType = Literal[
    "aircraft_fixed_wing",
    "aircraft_multirotor",
    "aircraft_vtol",
    "aircraft_helicopter",
    "aircraft_airship",
    "ground_vehicle_wheeled",
    "ground_vehicle_tracked",
    "surface_vessel_usv",
    "underwater_vehicle",
    "sensor_platform",
    "payload_system",
    "operator_station",
    "waypoint",
    "no_fly_zone",
    "geofence",
    "isr_sensor",
]
EntityStatus = Literal["active", "offline", "error"]  # the downstream PRD's entity statuses
# Also accepted (older records and clients) and stored as ``offline``: none of them is live.
EntityStatusInput = Literal["active", "offline", "error", "inactive", "unknown", "pending", "maintenance"]
Priority = Literal["critical", "high", "normal", "low"]
VideoProtocol = Literal["rtsp", "rtmp", "srt", "hls", "webrtc", "mjpeg"]
# MIL-STD-2525 standard identity: drives the console's symbols and the CoT type (docs/tak.md).
Affiliation = Literal["friend", "hostile", "neutral", "unknown", "pending"]

ENTITY_TYPES: tuple[str, ...] = EntityType.__args__  # type: ignore[attr-defined]
ENTITY_STATUSES: tuple[str, ...] = EntityStatus.__args__  # type: ignore[attr-defined]
ORG_TYPES: tuple[str, ...] = OrgType.__args__  # type: ignore[attr-defined]

Id = Annotated[str, msgspec.Meta(pattern=ID_PATTERN)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
Latitude = Annotated[float, msgspec.Meta(ge=-90, le=90)]
Longitude = Annotated[float, msgspec.Meta(ge=-180, le=180)]
Url = Annotated[str, msgspec.Meta(max_length=2048)]


class Position(msgspec.Struct, kw_only=True):
    """A fixed or home position."""

    latitude: Latitude
    longitude: Longitude
    altitude: float | None = None


class VideoConfig(msgspec.Struct, kw_only=True, omit_defaults=True):
    """External video endpoints of an entity (shown as links; MJPEG comes from NATS frames)."""

    protocol: VideoProtocol | None = None
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] | None = None
    stream_url: Url | None = None
    overlay_url: Url | None = None
    webrtc_url: Url | None = None
    overlay_webrtc_url: Url | None = None
    hls_url: Url | None = None


def registry_org_key(org_id: str) -> str:
    """KV key of an organisation record."""
    return f"org.{org_id}"


def registry_entity_key(entity_id: str) -> str:
    """KV key of an entity record."""
    return f"entity.{entity_id}"


class OrgRecord(msgspec.Struct, kw_only=True):
    """An organisation, as stored in the registry bucket.

    Ids are subject tokens: they end up in NATS subjects and in the embedded server's
    authorization block, so a record whose id is not one is refused when decoded.
    """

    org_id: Id
    name: str
    org_type: OrgType
    description: str = ""
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    created_at: str
    updated_at: str


class EntityRecord(msgspec.Struct, kw_only=True):
    """An entity, as stored in the registry bucket (ids are subject tokens, as for orgs)."""

    entity_id: Id
    org_id: Id
    name: str = ""
    entity_type: EntityType
    status: EntityStatusInput = "offline"
    priority: Priority = "normal"
    position: Position | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    video_config: VideoConfig | None = None
    created_at: str
    updated_at: str
    affiliation: Affiliation = "friend"

    def __post_init__(self) -> None:
        # Records written before the seeds' words (and clients that still send older ones)
        # are read as, and written back with, the PRD's status.
        if self.status not in ENTITY_STATUSES:
            self.status = "offline"
