"""Telemetry messages on ``constellation.telemetry.{org_id}.{entity_id}``.

Two shapes are accepted:

* the ontology payload — any subset of the telemetry scopes plus ``timestamp``
  (``{"position": {"global": {...}}, "power": {...}, "timestamp": "..."}``);
* the upstream MAVLink-style envelope ``{"message_type", "data", "timestamp"}``,
  mapped to the same scopes with unit conversions (``mavlink_to_scopes``).

``to_patch`` turns either into a state patch; unknown top-level keys of an ontology
payload are kept under ``extras`` so they can never overwrite another writer's scope.
"""

from __future__ import annotations

import math
from typing import Any

from core.contracts.common import DecodeError, validate
from core.contracts.state import TELEMETRY_FREE_SCOPES, TELEMETRY_SCOPES

ARDUCOPTER_MODES = {
    0: "STABILIZE",
    1: "ACRO",
    2: "ALT_HOLD",
    3: "AUTO",
    4: "GUIDED",
    5: "LOITER",
    6: "RTL",
    7: "CIRCLE",
    9: "LAND",
    11: "DRIFT",
    13: "SPORT",
    14: "FLIP",
    15: "AUTOTUNE",
    16: "POSHOLD",
    17: "BRAKE",
    18: "THROW",
    19: "AVOID_ADSB",
    20: "GUIDED_NOGPS",
    21: "SMART_RTL",
    22: "FLOWHOLD",
    23: "FOLLOW",
    24: "ZIGZAG",
    25: "SYSTEMID",
    26: "AUTOROTATE",
    27: "AUTO_RTL",
}

# Top-level keys of a telemetry payload that are not scopes.
_META_KEYS = {"timestamp", "entity_id", "org_id", "device_id", "source"}
# Keys a telemetry payload may never write (owned by other writers or the server).
_FORBIDDEN = {
    "detections",
    "analytics",
    "c4isr",
    "mission",
    "commands",
    "status",
    "is_live",
    "updated_at",
    "entity_type",
    "name",
    "priority",
}
MAX_EXTRAS = 32


def _num(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _pick(data: dict[str, Any], mapping: dict[str, str], scale: dict[str, float] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for src, dst in mapping.items():
        value = _num(data, src)
        if value is not None:
            out[dst] = value * (scale or {}).get(src, 1.0)
    return out


def mavlink_to_scopes(message_type: str, data: dict[str, Any], ts: str) -> dict[str, Any]:
    """Map one MAVLink-style message to telemetry scopes (SI units, degrees for heading)."""
    mt = message_type.upper()
    if mt == "HEARTBEAT":
        vs: dict[str, Any] = {"timestamp": ts}
        custom = _num(data, "custom_mode")
        if custom is not None:
            vs["custom_mode"] = int(custom)
            vs["mode"] = ARDUCOPTER_MODES.get(int(custom), f"UNKNOWN_{int(custom)}")
        base = _num(data, "base_mode")
        if base is not None:
            vs["armed"] = bool(int(base) & 128)
        for key, dst in (("autopilot", "autopilot"), ("system_status", "system_status"), ("type", "vehicle_type")):
            value = _num(data, key)
            if value is not None:
                vs[dst] = int(value)
        return {"vehicle_status": vs}
    if mt == "SYS_STATUS":
        vs = _pick(
            data,
            {
                "load": "load",
                "onboard_control_sensors_enabled": "sensors_enabled",
                "onboard_control_sensors_health": "sensors_health",
            },
        )
        for key in ("sensors_enabled", "sensors_health"):
            if key in vs:
                vs[key] = int(vs[key])
        power = _pick(
            data,
            {"voltage_battery": "voltage", "current_battery": "current", "battery_remaining": "battery_remaining"},
            {"voltage_battery": 0.001, "current_battery": 0.01},
        )  # mV → V, cA → A
        return {k: {**v, "timestamp": ts} for k, v in (("vehicle_status", vs), ("power", power)) if v}
    if mt == "GPS_RAW_INT":
        pos = _pick(
            data,
            {
                "lat": "latitude",
                "lon": "longitude",
                "alt": "altitude_msl",
                "eph": "accuracy_h",
                "epv": "accuracy_v",
                "satellites_visible": "satellites_visible",
                "fix_type": "fix_type",
            },
            {"lat": 1e-7, "lon": 1e-7, "alt": 0.001, "eph": 0.01, "epv": 0.01},
        )
        for key in ("satellites_visible", "fix_type"):
            if key in pos:
                pos[key] = int(pos[key])
        return {"position": {"global": {**pos, "timestamp": ts}}} if pos else {}
    if mt == "GLOBAL_POSITION_INT":
        pos = _pick(
            data,
            {"lat": "latitude", "lon": "longitude", "alt": "altitude_msl", "relative_alt": "altitude_relative"},
            {"lat": 1e-7, "lon": 1e-7, "alt": 0.001, "relative_alt": 0.001},
        )
        out: dict[str, Any] = {"position": {"global": {**pos, "timestamp": ts}}} if pos else {}
        hdg = _num(data, "hdg")
        if hdg is not None and hdg != 65535:
            out["vfr"] = {"heading": hdg / 100.0, "timestamp": ts}
        return out
    if mt == "ATTITUDE":
        euler = _pick(data, {k: k for k in ("roll", "pitch", "yaw", "rollspeed", "pitchspeed", "yawspeed")})
        return {"attitude": {"euler": {**euler, "timestamp": ts}}} if euler else {}
    if mt == "LOCAL_POSITION_NED":
        local = _pick(data, {k: k for k in ("x", "y", "z", "vx", "vy", "vz")})
        return {"position": {"local": {**local, "timestamp": ts}}} if local else {}
    if mt == "ALTITUDE":
        alt = _pick(
            data,
            {
                "altitude_amsl": "altitude_msl",
                "altitude_relative": "altitude_relative",
                "altitude_terrain": "altitude_terrain",
            },
        )
        return {"position": {"global": {**alt, "timestamp": ts}}} if alt else {}
    if mt == "VFR_HUD":
        vfr = _pick(
            data,
            {
                "airspeed": "airspeed",
                "groundspeed": "groundspeed",
                "heading": "heading",
                "climb": "climb_rate",
                "throttle": "throttle",
                "alt": "altitude",
            },
        )
        return {"vfr": {**vfr, "timestamp": ts}} if vfr else {}
    if mt == "BATTERY_STATUS":
        power = _pick(
            data,
            {
                "battery_remaining": "battery_remaining",
                "current_battery": "current",
                "current_consumed": "consumed",
                "energy_consumed": "energy_consumed",
                "temperature": "temperature",
            },
            {"current_battery": 0.01, "temperature": 0.01},
        )
        volts = data.get("voltages")
        if isinstance(volts, list):
            power["cells"] = [v / 1000.0 for v in volts if isinstance(v, (int, float)) and v not in (65535, -1)]
        return {"power": {**power, "timestamp": ts}} if power else {}
    if mt == "EXTENDED_SYS_STATE":
        vs = _pick(data, {"landed_state": "landed_state", "vtol_state": "vtol_state"})
        return {"vehicle_status": {**{k: int(v) for k, v in vs.items()}, "timestamp": ts}} if vs else {}
    if mt == "MISSION_CURRENT":
        seq = _num(data, "seq")
        return {"navigation": {"current_waypoint": int(seq), "timestamp": ts}} if seq is not None else {}
    if mt == "SCALED_PRESSURE":
        env = _pick(
            data,
            {"press_abs": "pressure_abs", "press_diff": "pressure_diff", "temperature": "temperature"},
            {"temperature": 0.01},
        )
        return {"environment": {**env, "timestamp": ts}} if env else {}
    # Anything else is kept verbatim, under extras, by message type.
    return {"extras": {f"last_{mt}": data}}


def to_patch(payload: dict[str, Any], received_at: str) -> tuple[dict[str, Any], str]:
    """Validate a decoded telemetry payload; return ``(scope patch, timestamp)``.

    Raises ``DecodeError`` (→ dead letter) when a scope has the wrong types or the
    payload carries nothing usable.
    """
    ts = payload.get("timestamp")
    if ts is not None and not isinstance(ts, str):
        raise DecodeError("timestamp must be an ISO 8601 string")
    ts = ts or received_at
    if "message_type" in payload:
        mtype, data = payload.get("message_type"), payload.get("data")
        if not isinstance(mtype, str) or not mtype or len(mtype) > 64:
            raise DecodeError("message_type must be a non-empty string")
        if not isinstance(data, dict):
            raise DecodeError("data must be an object")
        patch = mavlink_to_scopes(mtype, data, ts)
    else:
        patch = {}
        extras: dict[str, Any] = {}
        for key, value in payload.items():
            if key in _META_KEYS:
                continue
            if key in _FORBIDDEN:
                raise DecodeError(f"telemetry may not write {key!r} (owned by another writer)")
            if key in TELEMETRY_SCOPES:
                if not isinstance(value, dict):
                    raise DecodeError(f"{key} must be an object")
                validate(value, TELEMETRY_SCOPES[key], key)
                patch[key] = value
            elif key in TELEMETRY_FREE_SCOPES:
                if not isinstance(value, dict):
                    raise DecodeError(f"{key} must be an object")
                patch[key] = value
            else:
                extras[key] = value
        if len(extras) > MAX_EXTRAS:
            raise DecodeError(f"too many unknown fields ({len(extras)} > {MAX_EXTRAS})")
        if extras:
            patch["extras"] = {**patch.get("extras", {}), **extras}
    if not patch:
        raise DecodeError("no telemetry scope in message")
    return patch, ts


def position_of(patch: dict[str, Any]) -> tuple[float, float, float | None] | None:
    """``(lat, lon, alt)`` if the patch carries a global position, else ``None``."""
    pos = (patch.get("position") or {}).get("global") or {}
    lat, lon = pos.get("latitude"), pos.get("longitude")
    if isinstance(lat, (int, float)) and isinstance(lon, (int, float)) and -90 <= lat <= 90 and -180 <= lon <= 180:
        alt = pos.get("altitude_msl", pos.get("altitude_relative"))
        return float(lat), float(lon), float(alt) if isinstance(alt, (int, float)) else None
    return None
