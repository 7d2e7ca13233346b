"""Template contexts of the live console, built from the state cache (no database per frame).

Every struct here is what one partial renders; pages, HTMX responses and SSE events
all build them through these functions, so a region looks the same however it was
delivered.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import msgspec

from core.contracts.state import THREAT_LEVELS, status_word, threat_word
from services.cot.types import affiliation_of, entity_sidc
from services.mavlink.readiness import readiness as vehicle_readiness
from services.state_view import EntityView

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
    edge: str = ""  # on a hub: the edge box that owns the entity (docs/scale-out.md)

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


def entity_card(view: EntityView) -> EntityCard:
    """Card of one entity from its typed state view."""
    top = max((threat_word(o.threat_level) or "" for o in view.objects), key=threat_rank, default="")
    affiliation = affiliation_of(view.affiliation)
    entity_type = view.entity_type or "unknown"
    ready = vehicle_readiness(view.doc)
    return EntityCard(
        entity_id=view.entity_id,
        name=view.name,
        org_id=view.org_id,
        entity_type=entity_type,
        icon=TYPE_ICONS.get(entity_type, "?"),
        status=status_word(view.status or None, view.is_live),
        is_live=view.is_live,
        last_seen_ms=view.last_seen_ms,
        lat=view.latitude,
        lon=view.longitude,
        alt=view.altitude,
        speed=view.speed,
        heading=view.heading,
        battery=view.battery,
        voltage=view.voltage,
        mode=view.mode,
        armed=view.armed,
        active_objects=int(view.active_objects) if view.active_objects is not None else len(view.objects),
        alert_level=view.alert_level,
        threat_count=len(view.threat_alerts) or int(view.total_threats or 0),
        top_threat=top if threat_rank(top) >= THREAT_RANK["MODERATE_THREAT"] else "",
        threat_reason=(view.threat_alerts[0].reason if view.threat_alerts else "")[:200],
        priority=view.priority,
        affiliation=affiliation,
        sidc=entity_sidc(entity_type, affiliation, view.cot_type),
        readiness=ready.verdict if ready else "",
        readiness_label=ready.label if ready else "",
        last_command=view.last_command,
        last_command_status=view.last_command_status,
        edge=str(view.doc.get("edge") or "") if isinstance(view.doc.get("edge"), str) else "",
    )


def tracked_objects(view: EntityView) -> list[TrackedObjectView]:
    """Active tracked objects of an ISR entity, threats first."""
    out = []
    for obj in view.objects:
        box = obj.box
        out.append(
            TrackedObjectView(
                track_id=obj.track_id,
                label=obj.label,
                confidence=obj.confidence or 0.0,
                threat_level=threat_word(obj.threat_level or None) or "LOW_THREAT",
                x=box.x_min if box else 0.0,
                y=box.y_min if box else 0.0,
                w=max(0.0, box.x_max - box.x_min) if box else 0.0,
                h=max(0.0, box.y_max - box.y_min) if box else 0.0,
                has_box=box is not None,
                last_seen=obj.last_seen,
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
