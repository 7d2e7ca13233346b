"""The readiness verdict of a MAVLink vehicle, from its EntityState alone.

``Not ready`` (failing sensors, failing pre-arm checks and the vehicle's own PreArm
messages, no 3D GPS fix, battery under the threshold, still initialising or in a
critical state), ``Ready``, ``Armed`` (on the ground), ``Flying``, ``Landing``,
``Returning`` and ``Comm lost`` (no HEARTBEAT for ``MAVLINK_COMM_LOST_AFTER`` seconds,
or no telemetry from the bridge at all). Each verdict carries its reasons, and the
figures an operator checks before trusting it: link age, GPS fix/satellites/HDOP,
battery against its threshold, the vehicle's last messages.

Pure (no I/O): the console calls it for the entity page, the fleet column and filter.
"""

from __future__ import annotations

import calendar
import math
import time
from typing import Any

import msgspec

from services.mavlink.words import GPS_FIX_WORDS, PREARM_BIT, sensor_names

VERDICTS = {
    "not_ready": "Not ready",
    "ready": "Ready",
    "armed": "Armed",
    "flying": "Flying",
    "landing": "Landing",
    "returning": "Returning",
    "comm_lost": "Comm lost",
}
RETURN_MODES = {"RTL", "SMART_RTL", "AUTO_RTL", "QRTL", "RTGS"}
LAND_MODES = {"LAND", "QLAND", "LOITERALTQLAND", "AUTOLAND"}
PREARM_PREFIXES = ("prearm", "pre-arm", "preflight", "arm:", "arming denied")
PREARM_TEXT_WINDOW = 60.0  # seconds a PreArm message counts (ArduPilot repeats them every 30 s)
MESSAGES_SHOWN = 5
DEFAULT_BATTERY_THRESHOLD = 20.0  # OVERWATCH_BATTERY_ALERT_PERCENT's default
_threshold = [DEFAULT_BATTERY_THRESHOLD]


def configure(battery_threshold: float) -> None:
    """Use the server's ``OVERWATCH_BATTERY_ALERT_PERCENT`` as the default battery threshold."""
    _threshold[0] = battery_threshold


class VehicleMessage(msgspec.Struct, frozen=True):
    """One STATUSTEXT as shown."""

    severity: str
    level: int
    text: str
    at_ms: int


class Readiness(msgspec.Struct, kw_only=True):
    """What the readiness panel and the fleet column show."""

    verdict: str
    label: str
    reasons: list[str]
    armed: bool
    mode: str
    heartbeat_ms: int
    link_age: float | None  # seconds since the last HEARTBEAT, when it was rendered
    comm_lost_after: float
    via: str
    autopilot: str
    mavlink: int
    gps_fix: str
    gps_ok: bool
    satellites: int | None
    hdop: float | None
    battery: float | None
    battery_threshold: float
    battery_ok: bool | None
    messages: list[VehicleMessage]


def _d(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _n(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _i(value: Any) -> int | None:
    number = _n(value)
    return int(number) if number is not None else None


def _epoch_ms(value: Any) -> int:
    """Milliseconds since the epoch of our ISO 8601 UTC timestamps (0 when unreadable)."""
    if not isinstance(value, str) or len(value) < 19:
        return 0
    try:
        seconds = calendar.timegm(time.strptime(value[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return 0
    millis = int(value[20:23]) if len(value) >= 23 and value[19] == "." and value[20:23].isdigit() else 0
    return seconds * 1000 + millis


def is_mavlink(view: dict[str, Any]) -> bool:
    """Whether the entity's state comes from the MAVLink bridge (it has a ``vehicle_status.link``)."""
    return bool(_d(_d(view.get("vehicle_status")).get("link")))


def readiness(
    view: dict[str, Any], battery_threshold: float | None = None, now: float | None = None
) -> Readiness | None:
    """The verdict for one entity's merged state view; None when it is not a MAVLink vehicle."""
    battery_threshold = _threshold[0] if battery_threshold is None else battery_threshold
    status = _d(view.get("vehicle_status"))
    link = _d(status.get("link"))
    if not link:
        return None
    now = time.time() if now is None else now
    pos = _d(_d(view.get("position")).get("global"))
    power = _d(view.get("power"))
    armed = status.get("armed") is True
    mode = str(status.get("mode") or "")
    fix = _i(pos.get("fix_type"))
    sats = _i(pos.get("satellites_visible"))
    hdop = _n(pos.get("hdop"))
    battery = _n(power.get("battery_remaining"))
    battery_ok = None if battery is None else battery >= battery_threshold
    after = _n(link.get("comm_lost_after")) or 3.0
    messages = _messages(status.get("messages"))
    heartbeat_ms = _epoch_ms(link.get("heartbeat_at"))
    reasons: list[str] = []
    if link.get("comm_lost") is True:
        verdict = "comm_lost"
        reasons.append(f"no HEARTBEAT for more than {after:g} s")
    elif not view.get("is_live"):
        verdict = "comm_lost"
        reasons.append("no telemetry from the bridge (the bridge or its NATS connection is down)")
    elif armed:
        verdict = _airborne_verdict(status, mode, _n(pos.get("altitude_relative")))
        if battery_ok is False:
            reasons.append(f"battery {battery:.0f}% below {battery_threshold:.0f}%")
    else:
        reasons = _not_ready_reasons(status, fix, battery, battery_threshold, messages, now)
        verdict = "not_ready" if reasons else "ready"
    return Readiness(
        verdict=verdict,
        label=VERDICTS[verdict],
        reasons=reasons,
        armed=armed,
        mode=mode,
        heartbeat_ms=heartbeat_ms,
        link_age=max(0.0, now - heartbeat_ms / 1000) if heartbeat_ms else None,
        comm_lost_after=after,
        via=str(link.get("via") or ""),
        autopilot=str(link.get("autopilot") or ""),
        mavlink=_i(link.get("mavlink")) or 2,
        gps_fix=GPS_FIX_WORDS.get(fix, "unknown") if fix is not None else "unknown",
        gps_ok=fix is not None and fix >= 3,
        satellites=sats,
        hdop=hdop,
        battery=battery,
        battery_threshold=battery_threshold,
        battery_ok=battery_ok,
        messages=list(reversed(messages[-MESSAGES_SHOWN:])),
    )


def _airborne_verdict(status: dict[str, Any], mode: str, altitude: float | None) -> str:
    landed = _i(status.get("landed_state"))
    if mode.upper() in RETURN_MODES and landed != 1:
        return "returning"
    if landed == 4 or (mode.upper() in LAND_MODES and landed != 1):
        return "landing"
    if landed in (2, 3):
        return "flying"
    if landed == 1:
        return "armed"
    # No EXTENDED_SYS_STATE: judge by height above home.
    return "flying" if altitude is not None and altitude > 1.0 else "armed"


def _not_ready_reasons(
    status: dict[str, Any],
    fix: int | None,
    battery: float | None,
    threshold: float,
    messages: list[VehicleMessage],
    now: float,
) -> list[str]:
    reasons: list[str] = []
    system_status = _i(status.get("system_status"))
    if system_status in (0, 1, 2):
        reasons.append("autopilot initialising" if system_status != 2 else "autopilot calibrating")
    elif system_status in (5, 6, 8):
        reasons.append({5: "autopilot state CRITICAL", 6: "autopilot state EMERGENCY"}.get(system_status, "terminated"))
    present = _i(status.get("sensors_present")) or 0
    enabled = _i(status.get("sensors_enabled"))
    health = _i(status.get("sensors_health"))
    prearm_failing = False
    if enabled is not None and health is not None:
        failing = present & enabled & ~health
        prearm_failing = bool(failing & PREARM_BIT)
        sensors = sensor_names(failing & ~PREARM_BIT)
        if sensors:
            reasons.append("sensors unhealthy: " + ", ".join(sensors))
    texts = [
        m.text
        for m in messages
        if m.text.lower().startswith(PREARM_PREFIXES) and now * 1000 - m.at_ms < PREARM_TEXT_WINDOW * 1000
    ]
    prearm_reported = bool(present & PREARM_BIT) and not prearm_failing
    if prearm_failing or (texts and not prearm_reported):
        reasons.append("pre-arm checks failing" + (": " + "; ".join(dict.fromkeys(texts[-3:])) if texts else ""))
    if fix is None:
        reasons.append("no GPS report yet")
    elif fix < 3:
        reasons.append(f"GPS: {GPS_FIX_WORDS.get(fix, 'no fix')} (a 3D fix is needed)")
    if battery is not None and battery < threshold:
        reasons.append(f"battery {battery:.0f}% below {threshold:.0f}%")
    return reasons


def _messages(raw: Any) -> list[VehicleMessage]:
    out = []
    for item in raw if isinstance(raw, list) else []:
        entry = _d(item)
        text = entry.get("text")
        if not isinstance(text, str) or not text:
            continue
        level = _i(entry.get("level"))
        out.append(
            VehicleMessage(
                severity=str(entry.get("severity") or "INFO")[:16],
                level=6 if level is None else level,
                text=text[:500],
                at_ms=_epoch_ms(entry.get("timestamp")),
            )
        )
    return out
