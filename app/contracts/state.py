"""EntityState: the consolidated KV value per entity in ``CONSTELLATION_GLOBAL_STATE``.

Top level and the ``mission``/``detections``/``analytics``/``c4isr`` scopes follow the
KV EntityState spec exactly; telemetry adds ``position``, ``attitude``,
``vehicle_status``, ``power``, ``vfr`` (and ``environment``, ``navigation``,
``extras``), commands add ``commands``. Each writer owns a set of scopes
(``SCOPE_OWNERS``) and replaces only those, with compare-and-set on the revision.

The Structs here check *types*; writers keep the original dicts so unknown extra
fields survive (see ``app/contracts/common.validate``).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

# ---------------------------------------------------------------- telemetry scopes


class GlobalPosition(msgspec.Struct, kw_only=True):
    """WGS84 position; altitudes in metres, accuracies in metres."""

    latitude: float | None = msgspec.field(default=None)
    longitude: float | None = None
    altitude_msl: float | None = None
    altitude_relative: float | None = None
    altitude_terrain: float | None = None
    accuracy_h: float | None = None
    accuracy_v: float | None = None
    satellites_visible: int | None = None
    fix_type: int | None = None
    timestamp: str | None = None


class LocalPosition(msgspec.Struct, kw_only=True):
    """Local NED position (m) and velocity (m/s)."""

    x: float | None = None
    y: float | None = None
    z: float | None = None
    vx: float | None = None
    vy: float | None = None
    vz: float | None = None
    timestamp: str | None = None


class PositionScope(msgspec.Struct, kw_only=True):
    """``position`` scope."""

    global_: GlobalPosition | None = msgspec.field(default=None, name="global")
    local: LocalPosition | None = None


class Euler(msgspec.Struct, kw_only=True):
    """Attitude in radians, rates in rad/s."""

    roll: float | None = None
    pitch: float | None = None
    yaw: float | None = None
    rollspeed: float | None = None
    pitchspeed: float | None = None
    yawspeed: float | None = None
    timestamp: str | None = None


class Quaternion(msgspec.Struct, kw_only=True):
    """Attitude quaternion."""

    q1: float | None = None
    q2: float | None = None
    q3: float | None = None
    q4: float | None = None
    timestamp: str | None = None


class AttitudeScope(msgspec.Struct, kw_only=True):
    """``attitude`` scope."""

    euler: Euler | None = None
    quaternion: Quaternion | None = None


class VehicleStatus(msgspec.Struct, kw_only=True):
    """``vehicle_status`` scope (MAVLink HEARTBEAT/SYS_STATUS/EXTENDED_SYS_STATE)."""

    armed: bool | None = None
    mode: str | None = None
    custom_mode: int | None = None
    autopilot: int | None = None
    system_status: int | None = None
    vehicle_type: int | str | None = None
    landed_state: int | None = None
    vtol_state: int | None = None
    load: float | None = None
    sensors_enabled: int | None = None
    sensors_health: int | None = None
    timestamp: str | None = None


class Power(msgspec.Struct, kw_only=True):
    """``power`` scope: volts, amps, percent remaining, mAh, hJ, °C."""

    voltage: float | None = None
    current: float | None = None
    battery_remaining: float | None = None
    consumed: float | None = None
    energy_consumed: float | None = None
    cells: list[float] | None = None
    temperature: float | None = None
    timestamp: str | None = None


class Vfr(msgspec.Struct, kw_only=True):
    """``vfr`` scope: speeds m/s, heading degrees, altitude m, throttle %."""

    airspeed: float | None = None
    groundspeed: float | None = None
    heading: float | None = None
    climb_rate: float | None = None
    throttle: float | None = None
    altitude: float | None = None
    timestamp: str | None = None


# ---------------------------------------------------------------- detection scopes (KV spec)

ThreatLevel = Literal["HIGH_THREAT", "MEDIUM_THREAT", "MODERATE_THREAT", "LOW_THREAT", "NORMAL"]
AlertLevel = Literal["HIGH", "ELEVATED", "NORMAL"]


class BBox(msgspec.Struct, kw_only=True):
    """Normalised bounding box (0..1)."""

    x_min: float
    y_min: float
    x_max: float
    y_max: float


class TrackedObject(msgspec.Struct, kw_only=True, omit_defaults=False):
    """One tracked object in ``detections.objects``."""

    track_id: str
    label: str
    confidence: float
    first_seen: str | None = None
    last_seen: str | None = None
    frame_count: int = 0
    avg_confidence: float | None = None
    is_active: bool = True
    threat_level: str = "NORMAL"
    suspicious_indicators: list[str] = msgspec.field(default_factory=list)
    area: float | None = None
    current_bbox: BBox | None = None


class Mission(msgspec.Struct, kw_only=True):
    """``mission`` scope."""

    mode: str | None = None
    status: str | None = None
    started_at: str | None = None


class Detections(msgspec.Struct, kw_only=True):
    """``detections`` scope."""

    timestamp: str | None = None
    objects: dict[str, TrackedObject] = msgspec.field(default_factory=dict)


class Summary(msgspec.Struct, kw_only=True):
    """``analytics.summary``."""

    total_unique_objects: int = 0
    active_objects_count: int = 0
    total_frames_processed: int = 0


class C4isrSummary(msgspec.Struct, kw_only=True):
    """``analytics.c4isr_summary``."""

    timestamp: str | None = None
    active_threat_count: int = 0
    threat_distribution: dict[str, int] = msgspec.field(default_factory=dict)


class Analytics(msgspec.Struct, kw_only=True):
    """``analytics`` scope."""

    timestamp: str | None = None
    summary: Summary | None = None
    c4isr_summary: C4isrSummary | None = None


class ThreatAlert(msgspec.Struct, kw_only=True):
    """One entry of ``c4isr.threat_intelligence.threat_alerts``."""

    track_id: str
    alert_type: str
    reason: str
    timestamp: str | None = None
    label: str | None = None
    confidence: float | None = None


class ThreatSummary(msgspec.Struct, kw_only=True):
    """``c4isr.threat_intelligence.threat_summary``."""

    total_threats: int = 0
    alert_level: AlertLevel = "NORMAL"
    threat_distribution: dict[str, int] = msgspec.field(default_factory=dict)


class ThreatIntelligence(msgspec.Struct, kw_only=True):
    """``c4isr.threat_intelligence``."""

    threat_summary: ThreatSummary | None = None
    threat_alerts: list[ThreatAlert] = msgspec.field(default_factory=list)


class C4isr(msgspec.Struct, kw_only=True):
    """``c4isr`` scope (only in C4ISR mode)."""

    timestamp: str | None = None
    mission: str | None = None
    threat_intelligence: ThreatIntelligence | None = None


# ---------------------------------------------------------------- commands scope


class CommandSummary(msgspec.Struct, kw_only=True):
    """One command in the ``commands.recent`` list."""

    command_id: str
    command: str
    status: str
    updated_at: str
    detail: str = ""


class CommandsScope(msgspec.Struct, kw_only=True):
    """``commands`` scope: last N commands with their status."""

    timestamp: str | None = None
    recent: list[CommandSummary] = msgspec.field(default_factory=list)


# ---------------------------------------------------------------- EntityState


class EntityState(msgspec.Struct, kw_only=True):
    """The consolidated per-entity value (type view; the stored JSON may carry more)."""

    entity_id: str
    org_id: str = ""
    device_id: str = ""
    entity_type: str = "unknown"
    status: str = "unknown"
    is_live: bool = False
    updated_at: str = ""
    mission: Mission = msgspec.field(default_factory=Mission)
    detections: Detections = msgspec.field(default_factory=Detections)
    analytics: Analytics = msgspec.field(default_factory=Analytics)
    c4isr: C4isr | None = None
    name: str | None = None
    priority: str | None = None
    position: PositionScope | None = None
    attitude: AttitudeScope | None = None
    vehicle_status: VehicleStatus | None = None
    power: Power | None = None
    vfr: Vfr | None = None
    commands: CommandsScope | None = None


ROOT_FIELDS = ("entity_id", "org_id", "device_id", "entity_type", "status", "is_live", "updated_at")

TELEMETRY_SCOPES: dict[str, type[msgspec.Struct]] = {
    "position": PositionScope,
    "attitude": AttitudeScope,
    "vehicle_status": VehicleStatus,
    "power": Power,
    "vfr": Vfr,
}
# Extra telemetry scopes we store but do not type beyond "object".
TELEMETRY_FREE_SCOPES = ("environment", "navigation", "actuators", "extras")
DETECTION_SCOPES = ("mission", "detections", "analytics", "c4isr")

# Who writes which top-level keys (documented in docs/data-contracts.md).
SCOPE_OWNERS: dict[str, tuple[str, ...]] = {
    "registry": ("org_id", "entity_type", "name", "priority", "status", "affiliation"),
    "telemetry": (*TELEMETRY_SCOPES, *TELEMETRY_FREE_SCOPES, "is_live"),
    "detection": (*DETECTION_SCOPES, "device_id"),
    "commands": ("commands",),
}


def new_state(entity_id: str, org_id: str = "", entity_type: str = "unknown", **root: Any) -> dict[str, Any]:
    """A minimal EntityState dict with every always-present field of the spec."""
    state: dict[str, Any] = {
        "entity_id": entity_id,
        "org_id": org_id,
        "device_id": "",
        "entity_type": entity_type,
        "status": "unknown",
        "is_live": False,
        "updated_at": "",
        "mission": {},
        "detections": {},
        "analytics": {},
    }
    state.update(root)
    return state
