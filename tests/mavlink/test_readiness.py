"""The readiness verdict and its reasons, from EntityState alone (no I/O), and MAVLink mode names."""

from __future__ import annotations

import time
from typing import Any

import pytest

from services.mavlink import protocol
from services.mavlink.readiness import readiness
from services.mavlink.words import PREARM_BIT

M = protocol.MAV
ALL = 0b1111111 | PREARM_BIT
NOW = time.time()


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"


def view(**changes: Any) -> dict[str, Any]:
    status: dict[str, Any] = {
        "armed": False,
        "mode": "LOITER",
        "system_status": 3,
        "landed_state": 1,
        "sensors_present": ALL,
        "sensors_enabled": ALL,
        "sensors_health": ALL,
        "link": {"comm_lost": False, "heartbeat_at": _iso(NOW - 0.5), "via": "udp", "autopilot": "ArduPilot"},
        "messages": [],
    }
    status.update(changes.pop("status", {}))
    doc: dict[str, Any] = {
        "is_live": True,
        "vehicle_status": status,
        "position": {"global": {"fix_type": 3, "satellites_visible": 12, "hdop": 0.9, "altitude_relative": 0.0}},
        "power": {"battery_remaining": 80.0},
    }
    doc.update(changes)
    return doc


def test_not_a_mavlink_vehicle_has_no_verdict() -> None:
    assert readiness({"is_live": True, "vehicle_status": {"armed": True, "mode": "AUTO"}}) is None


@pytest.mark.parametrize(
    ("changes", "verdict"),
    [
        ({}, "ready"),
        ({"status": {"armed": True}}, "armed"),
        ({"status": {"armed": True, "landed_state": 2}}, "flying"),
        ({"status": {"armed": True, "landed_state": 3}}, "flying"),
        ({"status": {"armed": True, "landed_state": 4}}, "landing"),
        ({"status": {"armed": True, "landed_state": 2, "mode": "LAND"}}, "landing"),
        ({"status": {"armed": True, "landed_state": 2, "mode": "RTL"}}, "returning"),
        ({"status": {"armed": True, "landed_state": 2, "mode": "SMART_RTL"}}, "returning"),
        ({"status": {"armed": True, "landed_state": 0}}, "armed"),
        (
            {"status": {"armed": True, "landed_state": None}, "position": {"global": {"altitude_relative": 12}}},
            "flying",
        ),
        ({"status": {"link": {"comm_lost": True, "comm_lost_after": 3.0}}}, "comm_lost"),
        ({"is_live": False}, "comm_lost"),
    ],
)
def test_verdicts(changes: dict[str, Any], verdict: str) -> None:
    result = readiness(view(**changes), now=NOW)
    assert result is not None and result.verdict == verdict


def test_not_ready_reasons_name_what_is_wrong() -> None:
    bad = view(
        status={
            "sensors_health": ALL & ~32 & ~4 & ~PREARM_BIT,  # GPS and compass unhealthy, pre-arm failing
            "messages": [
                {"severity": "CRITICAL", "level": 2, "text": "PreArm: Compass not calibrated", "timestamp": _iso(NOW)},
                {"severity": "INFO", "level": 6, "text": "EKF3 IMU0 is using GPS", "timestamp": _iso(NOW)},
                {"severity": "CRITICAL", "level": 2, "text": "PreArm: old", "timestamp": _iso(NOW - 600)},
            ],
        },
        position={"global": {"fix_type": 2, "satellites_visible": 5, "hdop": 3.1}},
        power={"battery_remaining": 12.0},
    )
    result = readiness(bad, battery_threshold=25.0, now=NOW)
    assert result is not None and result.verdict == "not_ready" and result.label == "Not ready"
    assert result.reasons == [
        "sensors unhealthy: compass, GPS",
        "pre-arm checks failing: PreArm: Compass not calibrated",
        "GPS: 2D fix (a 3D fix is needed)",
        "battery 12% below 25%",
    ]
    assert (result.gps_fix, result.gps_ok, result.satellites, result.hdop) == ("2D fix", False, 5, 3.1)
    assert (result.battery_ok, result.battery_threshold) == (False, 25.0)
    assert [m.text for m in result.messages][:2] == ["PreArm: old", "EKF3 IMU0 is using GPS"]  # newest first
    assert result.link_age is not None and 0.4 < result.link_age < 1.0


def test_prearm_bit_healthy_overrides_stale_texts_and_initialising_is_not_ready() -> None:
    text = {"severity": "CRITICAL", "level": 2, "text": "PreArm: Need 3D Fix", "timestamp": _iso(NOW)}
    ok = readiness(view(status={"messages": [text]}), now=NOW)
    assert ok is not None and ok.verdict == "ready"  # the autopilot now reports its checks passing
    booting = readiness(view(status={"system_status": 1}), now=NOW)
    assert booting is not None and booting.reasons == ["autopilot initialising"]
    flying_low = readiness(view(status={"armed": True, "landed_state": 2}, power={"battery_remaining": 9}), now=NOW)
    assert flying_low is not None and flying_low.verdict == "flying" and flying_low.reasons == ["battery 9% below 20%"]


@pytest.mark.parametrize(
    ("autopilot", "mav_type", "base", "custom", "name"),
    [
        (protocol.AUTOPILOT_ARDUPILOT, M.MAV_TYPE_QUADROTOR, 217, 4, "GUIDED"),
        (protocol.AUTOPILOT_ARDUPILOT, M.MAV_TYPE_HEXAROTOR, 89, 6, "RTL"),
        (protocol.AUTOPILOT_ARDUPILOT, M.MAV_TYPE_FIXED_WING, 89, 5, "FBWA"),
        (protocol.AUTOPILOT_ARDUPILOT, M.MAV_TYPE_FIXED_WING, 89, 11, "RTL"),
        (protocol.AUTOPILOT_ARDUPILOT, M.MAV_TYPE_GROUND_ROVER, 89, 4, "HOLD"),
        (protocol.AUTOPILOT_ARDUPILOT, M.MAV_TYPE_QUADROTOR, 89, 77, "MODE(77)"),
        (protocol.AUTOPILOT_ARDUPILOT, M.MAV_TYPE_QUADROTOR, 0, 4, "MODE(0x00)"),
        (protocol.AUTOPILOT_PX4, M.MAV_TYPE_QUADROTOR, 157, protocol.px4_custom_mode(4, 4), "MISSION"),
        (protocol.AUTOPILOT_PX4, M.MAV_TYPE_QUADROTOR, 157, protocol.px4_custom_mode(4, 5), "RTL"),
        (protocol.AUTOPILOT_PX4, M.MAV_TYPE_FIXED_WING, 81, protocol.px4_custom_mode(3, 0), "POSCTL"),
    ],
)
def test_mode_names_come_from_pymavlinks_tables(
    autopilot: int, mav_type: int, base: int, custom: int, name: str
) -> None:
    assert protocol.mode_name(autopilot, mav_type, base, custom) == name
    if not name.startswith("MODE("):
        numbers = protocol.mode_numbers(autopilot, mav_type, name)
        assert numbers is not None
        encoded = protocol.px4_custom_mode(*numbers) if autopilot == protocol.AUTOPILOT_PX4 else numbers[0]
        assert encoded == custom
