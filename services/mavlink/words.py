"""MAVLink words the console needs without importing pymavlink (severities, GPS fixes, sensors)."""

from __future__ import annotations

SEVERITY_WORDS = ("EMERGENCY", "ALERT", "CRITICAL", "ERROR", "WARNING", "NOTICE", "INFO", "DEBUG")
GPS_FIX_WORDS = {0: "no GPS", 1: "no fix", 2: "2D fix", 3: "3D fix", 4: "DGPS", 5: "RTK float", 6: "RTK fixed"}
PREARM_BIT = 1 << 28  # MAV_SYS_STATUS_PREARM_CHECK: healthy = the autopilot's pre-arm checks pass
# MAV_SYS_STATUS_SENSOR bits as an operator names them.
SENSOR_NAMES = {
    1: "gyro",
    2: "accelerometer",
    4: "compass",
    8: "barometer",
    16: "airspeed",
    32: "GPS",
    64: "optical flow",
    128: "vision position",
    256: "laser position",
    1 << 10: "angular rate control",
    1 << 11: "attitude stabilisation",
    1 << 12: "yaw position",
    1 << 13: "altitude control",
    1 << 14: "position control",
    1 << 15: "motor outputs",
    1 << 16: "RC receiver",
    1 << 17: "gyro 2",
    1 << 18: "accelerometer 2",
    1 << 19: "compass 2",
    1 << 20: "geofence",
    1 << 21: "AHRS",
    1 << 22: "terrain",
    1 << 23: "reverse motor",
    1 << 24: "logging",
    1 << 25: "battery",
    1 << 26: "proximity",
    1 << 27: "satcom",
    1 << 28: "pre-arm checks",
    1 << 29: "obstacle avoidance",
    1 << 30: "propulsion",
}


def severity_word(level: int) -> str:
    """``WARNING`` for 4."""
    return SEVERITY_WORDS[level] if 0 <= level < len(SEVERITY_WORDS) else f"SEVERITY({level})"


def sensor_names(bits: int) -> list[str]:
    """Names of the ``MAV_SYS_STATUS_SENSOR`` bits set in ``bits`` (``GPS``, ``compass`` …)."""
    return [SENSOR_NAMES.get(1 << bit, f"sensor bit {bit}") for bit in range(31) if bits & (1 << bit)]
