"""EntityState: the consolidated KV value per entity in ``CONSTELLATION_GLOBAL_STATE``.

Top level and the ``mission``/``detections``/``analytics``/``c4isr`` scopes follow the
KV EntityState spec exactly; telemetry adds ``position``, ``attitude``,
``vehicle_status``, ``power``, ``vfr`` (and ``environment``, ``navigation``,
``extras``), commands add ``commands``. Each writer owns a set of scopes
(``SCOPE_OWNERS``) and replaces only those, with compare-and-set on the revision.

The Structs here check *types*; writers keep the original dicts so unknown extra
fields survive (see ``core/contracts/common.validate``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

import msgspec

from core.contracts.common import utc_now

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

ThreatLevel = Literal["LOW_THREAT", "MODERATE_THREAT", "HIGH_THREAT"]
AlertLevel = Literal["NORMAL", "ELEVATED", "HIGH"]


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
    threat_level: str = "LOW_THREAT"
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
    status: str = "offline"
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
    "registry": ("org_id", "entity_type", "name", "priority", "status", "affiliation", "camera"),
    "telemetry": (*TELEMETRY_SCOPES, *TELEMETRY_FREE_SCOPES, "is_live"),
    "detection": (*DETECTION_SCOPES, "device_id"),
    "commands": ("commands",),
}


# ---------------------------------------------------------------- the seeds' words
# Both seeds (downstream PRD, KV EntityState spec) name exactly these; integrators code against them.
THREAT_LEVELS: tuple[str, ...] = ("LOW_THREAT", "MODERATE_THREAT", "HIGH_THREAT")
ALERT_LEVELS: tuple[str, ...] = ("NORMAL", "ELEVATED", "HIGH")
STATUSES: tuple[str, ...] = ("active", "offline", "error")
# Words accepted on input and stored as the seeds' word: the upstream ISR client grades with
# MEDIUM_THREAT, and harmless objects were NORMAL before the seeds' three levels were adopted.
THREAT_ALIASES: dict[str, str] = {"MEDIUM_THREAT": "MODERATE_THREAT", "NORMAL": "LOW_THREAT"}
# Entity statuses of older records and other clients; none of them is live, so all are offline.
STATUS_ALIASES: dict[str, str] = dict.fromkeys(("inactive", "unknown", "pending", "maintenance"), "offline")
NO_MISSION = {"mode": "none", "status": "idle"}  # an entity without a detection pipeline


def threat_word(value: object) -> str | None:
    """The seeds' threat level for ``value`` (aliases normalised); ``None`` when it names none."""
    if not isinstance(value, str):
        return None
    word = value.strip().upper()
    word = THREAT_ALIASES.get(word, word)
    return word if word in THREAT_LEVELS else None


def status_word(value: object, is_live: bool = False) -> str:
    """The seeds' entity status for ``value``; anything unrecognised follows liveness."""
    if isinstance(value, str):
        word = STATUS_ALIASES.get(value, value)
        if word in STATUSES:
            return word
    return "active" if is_live else "offline"


def threat_distribution(counts: Any) -> dict[str, int]:
    """Counts per threat level, always all three levels (aliases folded in, other keys dropped)."""
    out = dict.fromkeys(THREAT_LEVELS, 0)
    if isinstance(counts, dict):
        for level, n in counts.items():
            word = threat_word(level)
            if word is not None and isinstance(n, int) and not isinstance(n, bool):
                out[word] += n
    return out


def alert_level_of(distribution: dict[str, int]) -> str:
    """``HIGH`` with any high threat, ``ELEVATED`` with any moderate one, else ``NORMAL``."""
    if distribution.get("HIGH_THREAT"):
        return "HIGH"
    if distribution.get("MODERATE_THREAT"):
        return "ELEVATED"
    return "NORMAL"


def empty_scopes(now: str) -> dict[str, Any]:
    """``mission``, ``detections`` and ``analytics`` of an entity that has detected nothing."""
    return {
        "mission": {**NO_MISSION, "started_at": now},
        "detections": {"timestamp": now, "objects": {}},
        "analytics": {
            "timestamp": now,
            "summary": {"total_unique_objects": 0, "active_objects_count": 0, "total_frames_processed": 0},
        },
    }


def new_state(entity_id: str, org_id: str = "", entity_type: str = "unknown", **root: Any) -> dict[str, Any]:
    """An EntityState dict that meets every Field Guarantee of the KV spec (status ``offline``)."""
    now = utc_now()
    state: dict[str, Any] = {
        "entity_id": entity_id,
        "org_id": org_id,
        "device_id": "",
        "entity_type": entity_type,
        "status": "offline",
        "is_live": False,
        "updated_at": now,
        **empty_scopes(now),
    }
    state.update(root)
    return state


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _objects(value: Any) -> dict[str, Any]:
    """``detections.objects`` with every object's ``threat_level`` in the seeds' words."""
    if not isinstance(value, dict):
        return {}
    out: dict[str, Any] = {}
    for track_id, obj in value.items():
        if isinstance(obj, dict) and "threat_level" in obj and obj["threat_level"] not in THREAT_LEVELS:
            obj = {**obj, "threat_level": threat_word(obj["threat_level"]) or "LOW_THREAT"}
        out[track_id] = obj
    return out


def _c4isr(value: dict[str, Any], now: str) -> dict[str, Any]:
    intel = value.get("threat_intelligence")
    intel = dict(intel) if isinstance(intel, dict) else {}
    summary = intel.get("threat_summary")
    summary = dict(summary) if isinstance(summary, dict) else {}
    summary["threat_distribution"] = threat_distribution(summary.get("threat_distribution"))
    summary["total_threats"] = _int(summary.get("total_threats"))
    if summary.get("alert_level") not in ALERT_LEVELS:
        summary["alert_level"] = alert_level_of(summary["threat_distribution"])
    intel["threat_summary"] = summary
    alerts = intel.get("threat_alerts")
    intel["threat_alerts"] = [
        {**a, "alert_type": threat_word(a.get("alert_type")) or "LOW_THREAT"} if isinstance(a, dict) else a
        for a in (alerts if isinstance(alerts, list) else [])
    ]
    return {**value, "timestamp": value.get("timestamp") or now, "threat_intelligence": intel}


def conform(doc: dict[str, Any], now: str | None = None) -> bool:
    """Bring ``doc`` to the KV spec's Field Guarantees and the seeds' words; True when it changed.

    Only what is missing, mistyped or spelt in another vocabulary changes; every other
    field of every scope is kept. Scopes are replaced, never edited in place (``doc`` is
    the shallow copy a ``StateStore`` mutation gets).
    """
    now = now or utc_now()
    before = dict(doc)
    for key in ("org_id", "device_id"):
        if not isinstance(doc.get(key), str):
            doc[key] = ""
    if not _text(doc.get("entity_type")):
        doc["entity_type"] = "unknown"
    if not isinstance(doc.get("is_live"), bool):
        doc["is_live"] = False
    if doc.get("status") not in STATUSES:
        doc["status"] = status_word(doc.get("status"), doc["is_live"])
    if not _text(doc.get("updated_at")):
        doc["updated_at"] = now
    empty = empty_scopes(now)
    mission = doc.get("mission")
    mission = mission if isinstance(mission, dict) else {}
    if not all(_text(mission.get(k)) for k in ("mode", "status", "started_at")):
        kept = {k: v for k, v in mission.items() if _text(v) or k not in ("mode", "status", "started_at")}
        doc["mission"] = {**empty["mission"], **kept}
    detections = doc.get("detections")
    detections = detections if isinstance(detections, dict) else {}
    objects = _objects(detections.get("objects"))
    if objects != detections.get("objects") or not _text(detections.get("timestamp")):
        doc["detections"] = {**detections, "timestamp": detections.get("timestamp") or now, "objects": objects}
    analytics = doc.get("analytics")
    analytics = analytics if isinstance(analytics, dict) else {}
    fixed = dict(analytics)
    summary = analytics.get("summary")
    summary = summary if isinstance(summary, dict) else {}
    active = sum(1 for o in objects.values() if isinstance(o, dict) and o.get("is_active", True))
    wanted = {
        "total_unique_objects": _int(summary.get("total_unique_objects", len(objects))),
        "active_objects_count": _int(summary.get("active_objects_count", active)),
        "total_frames_processed": _int(summary.get("total_frames_processed")),
    }
    if any(summary.get(k) != v for k, v in wanted.items()):
        fixed["summary"] = {**summary, **wanted}
    if not _text(analytics.get("timestamp")):
        fixed["timestamp"] = now
    c4 = analytics.get("c4isr_summary")
    if isinstance(c4, dict):
        distribution = threat_distribution(c4.get("threat_distribution"))
        if distribution != c4.get("threat_distribution") or not _text(c4.get("timestamp")):
            fixed["c4isr_summary"] = {
                **c4,
                "timestamp": c4.get("timestamp") or now,
                "threat_distribution": distribution,
            }
    if fixed != analytics:
        doc["analytics"] = fixed
    c4isr = doc.get("c4isr")
    if isinstance(c4isr, dict):
        shaped = _c4isr(c4isr, now)
        if shaped != c4isr:
            doc["c4isr"] = shaped
    elif "c4isr" in doc:
        del doc["c4isr"]  # conditional: present as an object or not at all
    return doc != before


def _timestamp(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return parsed.utcoffset() == timedelta(0)


def violations(key: str, doc: Any) -> list[str]:
    """How a stored value breaks the KV spec's Field Guarantees or the seeds' words (empty: none)."""
    if not isinstance(doc, dict):
        return [f"{key}: not a JSON object"]
    bad: list[str] = []
    if doc.get("entity_id") != key:
        bad.append(f"entity_id {doc.get('entity_id')!r} is not the key")
    for field in ("org_id", "device_id", "entity_type"):
        if not isinstance(doc.get(field), str):
            bad.append(f"{field} missing")
    if doc.get("status") not in STATUSES:
        bad.append(f"status {doc.get('status')!r} not one of {STATUSES}")
    if not isinstance(doc.get("is_live"), bool):
        bad.append("is_live is not a boolean")
    if not _timestamp(doc.get("updated_at")):
        bad.append(f"updated_at {doc.get('updated_at')!r} is not ISO 8601 UTC")
    mission = doc.get("mission")
    if not isinstance(mission, dict) or not all(_text(mission.get(k)) for k in ("mode", "status")):
        bad.append(f"mission {mission!r} lacks mode/status")
    elif not _timestamp(mission.get("started_at")):
        bad.append(f"mission.started_at {mission.get('started_at')!r} is not ISO 8601 UTC")
    detections = doc.get("detections")
    if not isinstance(detections, dict) or not isinstance(detections.get("objects"), dict):
        bad.append("detections.objects is not an object")
    else:
        if not _timestamp(detections.get("timestamp")):
            bad.append("detections.timestamp is not ISO 8601 UTC")
        for track_id, obj in detections["objects"].items():
            if not isinstance(obj, dict) or obj.get("threat_level") not in THREAT_LEVELS:
                bad.append(f"detections.objects.{track_id}.threat_level not one of {THREAT_LEVELS}")
    analytics = doc.get("analytics")
    summary = analytics.get("summary") if isinstance(analytics, dict) else None
    if not isinstance(summary, dict) or not all(
        isinstance(summary.get(k), int)
        for k in ("total_unique_objects", "active_objects_count", "total_frames_processed")
    ):
        bad.append("analytics.summary lacks its three counts")
    if not isinstance(analytics, dict) or not _timestamp(analytics.get("timestamp")):
        bad.append("analytics.timestamp is not ISO 8601 UTC")
    c4 = analytics.get("c4isr_summary") if isinstance(analytics, dict) else None
    if c4 is not None and (not isinstance(c4, dict) or set(c4.get("threat_distribution") or {}) != set(THREAT_LEVELS)):
        bad.append("analytics.c4isr_summary.threat_distribution does not hold the three levels")
    if "c4isr" in doc:
        c4isr = doc["c4isr"]
        intel = c4isr.get("threat_intelligence") if isinstance(c4isr, dict) else None
        summary4 = intel.get("threat_summary") if isinstance(intel, dict) else None
        if not isinstance(summary4, dict):
            bad.append("c4isr.threat_intelligence.threat_summary missing")
        else:
            if summary4.get("alert_level") not in ALERT_LEVELS:
                bad.append(f"alert_level {summary4.get('alert_level')!r} not one of {ALERT_LEVELS}")
            if set(summary4.get("threat_distribution") or {}) != set(THREAT_LEVELS):
                bad.append("c4isr threat_distribution does not hold the three levels")
        alerts = intel.get("threat_alerts") if isinstance(intel, dict) else None
        for alert in alerts if isinstance(alerts, list) else []:
            if not isinstance(alert, dict) or alert.get("alert_type") not in THREAT_LEVELS:
                bad.append(f"threat alert type {alert!r} not one of {THREAT_LEVELS}")
        if not isinstance(c4isr, dict) or not _timestamp(c4isr.get("timestamp")):
            bad.append("c4isr.timestamp is not ISO 8601 UTC")
    return bad
