"""Template contexts of the live console, built from the state cache (no database per frame).

Every struct here is what one partial renders; pages, HTMX responses and SSE events
all build them through these functions, so a region looks the same however it was
delivered.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from typing import Any

import msgspec

from core.contracts.state import THREAT_LEVELS, status_word, threat_word
from core.timefmt import epoch_ms
from services.cot.types import affiliation_of, entity_sidc
from services.mavlink.readiness import readiness as vehicle_readiness

# Short type codes render in every font (pictographs such as ⛟ often do not).
TYPE_ICONS = {
    "aircraft_multirotor": "MR",
    "aircraft_fixed_wing": "FW",
    "aircraft_vtol": "VT",
    "aircraft_helicopter": "HE",
    "aircraft_airship": "AS",
    "ground_vehicle_wheeled": "GV",
    "ground_vehicle_tracked": "GT",
    "surface_vessel_usv": "SV",
    "underwater_vehicle": "UV",
    "sensor_platform": "SN",
    "isr_sensor": "ISR",
    "payload_system": "PL",
    "operator_station": "OP",
    "waypoint": "WP",
    "no_fly_zone": "NFZ",
    "geofence": "GF",
}
THREAT_RANK = {level: i + 1 for i, level in enumerate(THREAT_LEVELS)}  # LOW 1, MODERATE 2, HIGH 3


def threat_rank(level: object) -> int:
    """Rank of a threat level (older words read as the seeds' ones); 0 for none."""
    return THREAT_RANK.get(threat_word(level) or "", 0)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class TrackedObjectView(msgspec.Struct, kw_only=True):
    """One object in the detection overlay and list."""

    track_id: str
    label: str
    confidence: float
    threat_level: str
    x: float
    y: float
    w: float
    h: float
    has_box: bool
    last_seen: str


class EntityCard(msgspec.Struct, kw_only=True):
    """What a card, a fleet row, a map marker and the entity header show."""

    entity_id: str
    name: str
    org_id: str
    entity_type: str
    icon: str
    status: str
    is_live: bool
    last_seen_ms: int
    lat: float | None = None
    lon: float | None = None
    alt: float | None = None
    speed: float | None = None
    heading: float | None = None
    battery: float | None = None
    voltage: float | None = None
    mode: str = ""
    armed: bool | None = None
    active_objects: int = 0
    alert_level: str = "NORMAL"
    threat_count: int = 0
    top_threat: str = ""
    threat_reason: str = ""
    priority: str = "normal"
    affiliation: str = "friend"  # MIL-STD-2525 standard identity, from the registry
    sidc: str = ""  # 2525C symbol code (services/cot/types.py), drawn by milsymbol in the browser
    readiness: str = ""  # MAVLink vehicles: not_ready, ready, armed, flying, landing, returning, comm_lost
    readiness_label: str = ""
    last_command: str = ""
    last_command_status: str = ""

    @property
    def marker_state(self) -> str:
        """CSS/map state: threat, offline, low battery or normal."""
        if self.alert_level == "HIGH" or self.top_threat == "HIGH_THREAT":
            return "threat"
        if self.threat_count:
            return "elevated"
        if not self.is_live:
            return "offline"
        if self.battery is not None and self.battery < 20:
            return "battery"
        return "ok"


def entity_card(view: dict[str, Any]) -> EntityCard:
    """Card of one entity from its merged state view."""
    pos = _dict(_dict(view.get("position")).get("global"))
    vfr = _dict(view.get("vfr"))
    power = _dict(view.get("power"))
    status = _dict(view.get("vehicle_status"))
    euler = _dict(_dict(view.get("attitude")).get("euler"))
    heading = _num(vfr.get("heading"))
    if heading is None and _num(euler.get("yaw")) is not None:
        heading = (math.degrees(_num(euler.get("yaw")) or 0.0) + 360) % 360
    objects = _dict(_dict(view.get("detections")).get("objects"))
    intel = _dict(_dict(view.get("c4isr")).get("threat_intelligence"))
    summary = _dict(intel.get("threat_summary"))
    raw_alerts = intel.get("threat_alerts")
    alerts: list[Any] = raw_alerts if isinstance(raw_alerts, list) else []
    top = max((threat_word(_dict(o).get("threat_level")) or "" for o in objects.values()), key=threat_rank, default="")
    reason = str(_dict(alerts[0]).get("reason") or "") if alerts else ""
    analytics = _dict(_dict(view.get("analytics")).get("summary"))
    active = _num(analytics.get("active_objects_count"))
    entity_type = str(view.get("entity_type") or "unknown")
    affiliation = affiliation_of(view.get("affiliation"))
    ready = vehicle_readiness(view)
    recent = _dict(view.get("commands")).get("recent")
    last = _dict(recent[0]) if isinstance(recent, list) and recent else {}
    return EntityCard(
        entity_id=str(view.get("entity_id") or ""),
        name=str(view.get("name") or view.get("entity_id") or ""),
        org_id=str(view.get("org_id") or ""),
        entity_type=entity_type,
        icon=TYPE_ICONS.get(entity_type, "?"),
        status=status_word(view.get("status"), bool(view.get("is_live"))),
        is_live=bool(view.get("is_live")),
        last_seen_ms=epoch_ms(view.get("last_seen") or view.get("updated_at")),
        lat=_num(pos.get("latitude")),
        lon=_num(pos.get("longitude")),
        alt=_num(pos.get("altitude_relative", pos.get("altitude_msl"))),
        speed=_num(vfr.get("groundspeed")),
        heading=heading,
        battery=_num(power.get("battery_remaining")),
        voltage=_num(power.get("voltage")),
        mode=str(status.get("mode") or _dict(view.get("mission")).get("mode") or ""),
        armed=status.get("armed") if isinstance(status.get("armed"), bool) else None,
        active_objects=int(active) if active is not None else len(objects),
        alert_level=str(summary.get("alert_level") or "NORMAL"),
        threat_count=len(alerts) or int(_num(summary.get("total_threats")) or 0),
        top_threat=top if threat_rank(top) >= THREAT_RANK["MODERATE_THREAT"] else "",
        threat_reason=reason[:200],
        priority=str(view.get("priority") or "normal"),
        affiliation=affiliation,
        sidc=entity_sidc(entity_type, affiliation, str(_dict(_dict(view.get("extras")).get("cot")).get("type") or "")),
        readiness=ready.verdict if ready else "",
        readiness_label=ready.label if ready else "",
        last_command=str(last.get("command") or ""),
        last_command_status=str(last.get("status") or ""),
    )


def tracked_objects(view: dict[str, Any]) -> list[TrackedObjectView]:
    """Active tracked objects of an ISR entity, threats first."""
    out = []
    for key, raw in _dict(_dict(view.get("detections")).get("objects")).items():
        obj = _dict(raw)
        box = _dict(obj.get("current_bbox") or obj.get("bbox"))
        x0, y0 = _num(box.get("x_min", box.get("x1"))), _num(box.get("y_min", box.get("y1")))
        x1, y1 = _num(box.get("x_max", box.get("x2"))), _num(box.get("y_max", box.get("y2")))
        has_box = None not in (x0, y0, x1, y1)
        out.append(
            TrackedObjectView(
                track_id=str(obj.get("track_id") or key),
                label=str(obj.get("label") or "object"),
                confidence=_num(obj.get("confidence")) or 0.0,
                threat_level=threat_word(obj.get("threat_level")) or "LOW_THREAT",
                x=x0 or 0.0,
                y=y0 or 0.0,
                w=max(0.0, (x1 or 0) - (x0 or 0)),
                h=max(0.0, (y1 or 0) - (y0 or 0)),
                has_box=has_box,
                last_seen=str(obj.get("last_seen") or ""),
            )
        )
    out.sort(key=lambda o: (-threat_rank(o.threat_level), -o.confidence))
    return out


class FleetSummary(msgspec.Struct, kw_only=True):
    """The analytics counters over all visible entities."""

    total: int
    live: int
    offline: int
    by_type: list[tuple[str, int]]
    by_status: list[tuple[str, int]]
    threats_high: int
    threats_elevated: int
    tracked_objects: int
    detections_per_minute: int
    alerts_open: int
    at: float


def fleet_summary(cards: list[EntityCard], detections_per_minute: int, alerts_open: int) -> FleetSummary:
    """Counters computed over every card (not just the ones that changed)."""
    types = Counter(c.entity_type for c in cards)
    statuses = Counter(c.status for c in cards)
    live = sum(1 for c in cards if c.is_live)
    return FleetSummary(
        total=len(cards),
        live=live,
        offline=len(cards) - live,
        by_type=sorted(types.items()),
        by_status=sorted(statuses.items()),
        threats_high=sum(1 for c in cards if c.alert_level == "HIGH" or c.top_threat == "HIGH_THREAT"),
        threats_elevated=sum(c.threat_count for c in cards if c.alert_level == "ELEVATED"),
        tracked_objects=sum(c.active_objects for c in cards),
        detections_per_minute=detections_per_minute,
        alerts_open=alerts_open,
        at=time.time(),
    )


def sort_cards(cards: list[EntityCard], key: str, descending: bool) -> list[EntityCard]:
    """Sort fleet rows by a column (missing values last)."""

    def value(c: EntityCard) -> Any:
        v = getattr(c, key, None)
        return (v is None, v if v is not None else 0)

    if key not in EntityCard.__struct_fields__:
        key = "name"
    return sorted(cards, key=value, reverse=descending)
