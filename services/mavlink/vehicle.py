"""One vehicle seen by the bridge, and MAVLink messages → EntityState scopes.

Each handler reads a pymavlink message's fields (attributes, no ``to_dict``: this is
the hot path) and merges SI values into the vehicle's pending patch; the bridge
publishes the patch once per ``MAVLINK_PUBLISH_INTERVAL`` (latest value of each field
wins, as the server's own coalescing does). Sentinels MAVLink uses for "unknown"
(``-1``, ``UINT16_MAX``, ``INT16_MAX``) never reach the state.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from services.mavlink import protocol
from services.mavlink.links import Link, Peer
from services.mavlink.words import severity_word

MESSAGES_KEPT = 8  # STATUSTEXT lines kept in vehicle_status.messages
UINT16_MAX = 65535
INT16_MAX = 32767


class Vehicle:
    """A MAVLink system (one autopilot component) the bridge has heard a HEARTBEAT from."""

    __slots__ = (
        "sysid",
        "compid",
        "entity_id",
        "name",
        "entity_type",
        "bound",
        "link",
        "peer",
        "autopilot",
        "mav_type",
        "base_mode",
        "custom_mode",
        "mode",
        "armed",
        "protocol_version",
        "last_heartbeat",
        "heartbeat_wall",
        "comm_lost",
        "registered",
        "registering",
        "pos",
        "status",
        "power",
        "vfr",
        "att",
        "nav",
        "link_dirty",
        "dirty",
        "oldest_pending",
        "messages",
        "text_chunks",
        "last_text_at",
        "home_alt_msl",
        "alt_msl",
        "alt_rel",
        "lat",
        "lon",
        "landed_state",
        "received",
        "published",
    )

    def __init__(self, sysid: int, compid: int, entity_id: str, name: str, link: Link, peer: Peer) -> None:
        self.sysid = sysid
        self.compid = compid
        self.entity_id = entity_id
        self.name = name
        self.entity_type = "sensor_platform"
        self.bound = False
        self.link = link
        self.peer = peer
        self.autopilot = protocol.AUTOPILOT_INVALID
        self.mav_type = 0
        self.base_mode = 0
        self.custom_mode = 0
        self.mode = ""
        self.armed = False
        self.protocol_version = 2
        self.last_heartbeat = time.monotonic()
        self.heartbeat_wall = time.time()
        self.comm_lost = False
        self.registered = False
        self.registering = False
        self.pos: dict[str, Any] = {}
        self.status: dict[str, Any] = {}
        self.power: dict[str, Any] = {}
        self.vfr: dict[str, Any] = {}
        self.att: dict[str, Any] = {}
        self.nav: dict[str, Any] = {}
        self.link_dirty = True
        self.dirty = False
        self.oldest_pending = 0.0
        self.messages: deque[dict[str, Any]] = deque(maxlen=MESSAGES_KEPT)
        self.text_chunks: dict[int, list[str]] = {}
        self.last_text_at = 0.0
        self.home_alt_msl: float | None = None
        self.alt_msl: float | None = None
        self.alt_rel: float | None = None
        self.lat: float | None = None
        self.lon: float | None = None
        self.landed_state = 0
        self.received = 0
        self.published = 0

    @property
    def label(self) -> str:
        """``sysid 1 (mav-1)`` for logs."""
        return f"sysid {self.sysid} ({self.entity_id})"

    def touch(self) -> None:
        """Something new is pending."""
        if not self.dirty:
            self.dirty = True
            self.oldest_pending = time.monotonic()

    def take_patch(self, ts: str, link: dict[str, Any]) -> dict[str, Any]:
        """The telemetry payload of everything pending (then cleared), stamped ``ts``."""
        body: dict[str, Any] = {"timestamp": ts}
        if self.pos:
            body["position"] = {"global": {**self.pos, "timestamp": ts}}
        if self.status or self.link_dirty:
            status = {**self.status, "timestamp": ts}
            if self.link_dirty:
                status["link"] = link
                self.link_dirty = False
            body["vehicle_status"] = status
        if self.power:
            body["power"] = {**self.power, "timestamp": ts}
        if self.vfr:
            body["vfr"] = {**self.vfr, "timestamp": ts}
        if self.att:
            body["attitude"] = {"euler": {**self.att, "timestamp": ts}}
        if self.nav:
            body["navigation"] = {**self.nav, "timestamp": ts}
        self.pos, self.status, self.power, self.vfr, self.att, self.nav = {}, {}, {}, {}, {}, {}
        self.dirty = False
        return body


# ---------------------------------------------------------------- message handlers

_mode_cache: dict[tuple[int, int, int, int], str] = {}


def on_heartbeat(v: Vehicle, msg: Any) -> None:
    """Autopilot, type, mode name, armed, system status."""
    base, custom = msg.base_mode, msg.custom_mode
    key = (msg.autopilot, msg.type, base & protocol.MODE_FLAG_CUSTOM, custom)
    mode = _mode_cache.get(key)
    if mode is None:
        mode = _mode_cache[key] = protocol.mode_name(msg.autopilot, msg.type, base, custom)
        if len(_mode_cache) > 4096:
            _mode_cache.clear()
    v.autopilot, v.mav_type, v.base_mode, v.custom_mode, v.mode = msg.autopilot, msg.type, base, custom, mode
    armed = v.armed = bool(base & protocol.MODE_FLAG_ARMED)
    v.status.update(
        armed=armed,
        mode=mode,
        custom_mode=custom,
        base_mode=base,
        autopilot=msg.autopilot,
        vehicle_type=msg.type,
        system_status=msg.system_status,
    )
    v.protocol_version = 1 if msg.get_msgbuf()[0] == 0xFE else 2
    v.last_heartbeat = time.monotonic()
    v.heartbeat_wall = time.time()
    v.link_dirty = True
    v.touch()


def on_sys_status(v: Vehicle, msg: Any) -> None:
    """Sensor bits, load, battery voltage/current/remaining."""
    v.status.update(
        load=msg.load / 10.0,
        sensors_present=msg.onboard_control_sensors_present,
        sensors_enabled=msg.onboard_control_sensors_enabled,
        sensors_health=msg.onboard_control_sensors_health,
    )
    if msg.voltage_battery != UINT16_MAX:
        v.power["voltage"] = msg.voltage_battery / 1000.0
    if msg.current_battery != -1:
        v.power["current"] = msg.current_battery / 100.0
    if msg.battery_remaining != -1:
        v.power["battery_remaining"] = float(msg.battery_remaining)
    v.touch()


def on_global_position_int(v: Vehicle, msg: Any) -> None:
    """Fused position: lat/lon, altitude MSL and relative; heading."""
    lat, lon = msg.lat / 1e7, msg.lon / 1e7
    alt, rel = msg.alt / 1000.0, msg.relative_alt / 1000.0
    v.lat, v.lon, v.alt_msl, v.alt_rel = lat, lon, alt, rel
    pos = v.pos
    pos["latitude"], pos["longitude"], pos["altitude_msl"], pos["altitude_relative"] = lat, lon, alt, rel
    if msg.hdg != UINT16_MAX:
        v.vfr["heading"] = msg.hdg / 100.0
    v.touch()


def on_attitude(v: Vehicle, msg: Any) -> None:
    """Roll, pitch, yaw (rad) and their rates (rad/s)."""
    v.att.update(
        roll=msg.roll,
        pitch=msg.pitch,
        yaw=msg.yaw,
        rollspeed=msg.rollspeed,
        pitchspeed=msg.pitchspeed,
        yawspeed=msg.yawspeed,
    )
    v.touch()


def on_vfr_hud(v: Vehicle, msg: Any) -> None:
    """Air/ground speed, heading, throttle, altitude, climb rate."""
    v.vfr.update(
        airspeed=msg.airspeed,
        groundspeed=msg.groundspeed,
        heading=float(msg.heading),
        throttle=float(msg.throttle),
        altitude=msg.alt,
        climb_rate=msg.climb,
    )
    v.touch()


def on_gps_raw_int(v: Vehicle, msg: Any) -> None:
    """Fix type, satellites, HDOP/VDOP, horizontal/vertical accuracy (MAVLink 2 extensions)."""
    pos = v.pos
    pos["fix_type"] = msg.fix_type
    if msg.satellites_visible != 255:
        pos["satellites_visible"] = msg.satellites_visible
    if msg.eph != UINT16_MAX:
        pos["hdop"] = msg.eph / 100.0
    if msg.epv != UINT16_MAX:
        pos["vdop"] = msg.epv / 100.0
    h_acc = getattr(msg, "h_acc", 0)
    if h_acc:
        pos["accuracy_h"] = h_acc / 1000.0
    v_acc = getattr(msg, "v_acc", 0)
    if v_acc:
        pos["accuracy_v"] = v_acc / 1000.0
    v.touch()


def on_battery_status(v: Vehicle, msg: Any) -> None:
    """The first battery's cells, current, consumption, remaining and temperature."""
    if msg.id != 0:
        return
    power = v.power
    cells = [c / 1000.0 for c in msg.voltages if c not in (UINT16_MAX, UINT16_MAX - 1)]
    cells += [c / 1000.0 for c in getattr(msg, "voltages_ext", ()) or () if c not in (0, UINT16_MAX - 1)]
    if cells:
        power["cells"] = cells
    if msg.current_battery != -1:
        power["current"] = msg.current_battery / 100.0
    if msg.current_consumed != -1:
        power["consumed"] = float(msg.current_consumed)
    if msg.energy_consumed != -1:
        power["energy_consumed"] = float(msg.energy_consumed)
    if msg.temperature != INT16_MAX:
        power["temperature"] = msg.temperature / 100.0
    if msg.battery_remaining != -1:
        power["battery_remaining"] = float(msg.battery_remaining)
    v.touch()


def on_home_position(v: Vehicle, msg: Any) -> None:
    """Home (where RTL returns to; PX4 altitudes are relative to it)."""
    v.home_alt_msl = msg.altitude / 1000.0
    v.nav["home"] = {"latitude": msg.latitude / 1e7, "longitude": msg.longitude / 1e7, "altitude_msl": v.home_alt_msl}
    v.touch()


def on_extended_sys_state(v: Vehicle, msg: Any) -> None:
    """Landed state (on ground, taking off, in air, landing) and VTOL state."""
    v.landed_state = msg.landed_state
    v.status.update(landed_state=msg.landed_state, vtol_state=msg.vtol_state)
    v.touch()


def on_statustext(v: Vehicle, msg: Any) -> None:
    """The vehicle's own words (pre-arm failures, failsafes), kept with their severity.

    MAVLink 2 splits long texts into chunks sharing an ``id``; they are joined before
    being kept (a chunk shorter than 50 characters ends the text).
    """
    raw = msg.text
    text = raw.decode("utf-8", "replace") if isinstance(raw, (bytes, bytearray)) else str(raw)
    text = text.split("\x00", 1)[0]
    chunk_id = getattr(msg, "id", 0)
    if chunk_id:
        parts = v.text_chunks.setdefault(chunk_id, [])
        parts.append(text)
        if len(text) >= 50 and len(parts) < 8:
            return  # more chunks to come
        text = "".join(v.text_chunks.pop(chunk_id))
    text = text.strip()[:500]
    if not text:
        return
    now = time.time()
    v.last_text_at = now
    v.messages.append(
        {
            "severity": severity_word(msg.severity),
            "level": msg.severity,
            "text": text,
            "timestamp": _iso(now),
        }
    )
    v.status["messages"] = list(v.messages)
    v.touch()


HANDLERS: dict[str, Callable[[Vehicle, Any], None]] = {
    "HEARTBEAT": on_heartbeat,
    "SYS_STATUS": on_sys_status,
    "GLOBAL_POSITION_INT": on_global_position_int,
    "ATTITUDE": on_attitude,
    "VFR_HUD": on_vfr_hud,
    "GPS_RAW_INT": on_gps_raw_int,
    "BATTERY_STATUS": on_battery_status,
    "HOME_POSITION": on_home_position,
    "EXTENDED_SYS_STATE": on_extended_sys_state,
    "STATUSTEXT": on_statustext,
}


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"
