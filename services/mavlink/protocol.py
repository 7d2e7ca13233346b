"""MAVLink vocabulary the bridge and the emulator share: the dialect, words, types and modes.

The dialect is ArduPilot's (``ardupilotmega``: ``common`` plus ArduPilot's messages) for
MAVLink 2; its parser reads MAVLink 1 frames too. Mode names come from pymavlink's
tables (ArduCopter, ArduPlane, Rover, Sub, … by ``MAV_TYPE``; PX4's main/sub modes),
so a mode is named the way QGroundControl and MAVProxy name it.
"""

from __future__ import annotations

import functools
from typing import Any

from pymavlink.dialects.v20 import ardupilotmega as mavlink

MAV = mavlink

AUTOPILOT_ARDUPILOT = mavlink.MAV_AUTOPILOT_ARDUPILOTMEGA
AUTOPILOT_PX4 = mavlink.MAV_AUTOPILOT_PX4
AUTOPILOT_INVALID = mavlink.MAV_AUTOPILOT_INVALID
MODE_FLAG_ARMED = mavlink.MAV_MODE_FLAG_SAFETY_ARMED
MODE_FLAG_CUSTOM = mavlink.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED
FORCE_DISARM_MAGIC = 21196  # param2 of MAV_CMD_COMPONENT_ARM_DISARM that overrides the vehicle's checks
REPOSITION_CHANGE_MODE = 1  # MAV_DO_REPOSITION_FLAGS_CHANGE_MODE: switch to guided to fly there

# MAV_RESULT → the word kept in a command's detail (6 = CANCELLED is newer than some dialects).
RESULT_WORDS: dict[int, str] = {
    0: "ACCEPTED",
    1: "TEMPORARILY_REJECTED",
    2: "DENIED",
    3: "UNSUPPORTED",
    4: "FAILED",
    5: "IN_PROGRESS",
    6: "CANCELLED",
    7: "COMMAND_LONG_ONLY",
    8: "COMMAND_INT_ONLY",
}
RESULT_ACCEPTED = 0
RESULT_IN_PROGRESS = 5


AUTOPILOT_NAMES = {AUTOPILOT_ARDUPILOT: "ArduPilot", AUTOPILOT_PX4: "PX4", mavlink.MAV_AUTOPILOT_GENERIC: "generic"}

_MULTIROTOR = {
    mavlink.MAV_TYPE_QUADROTOR,
    mavlink.MAV_TYPE_HEXAROTOR,
    mavlink.MAV_TYPE_OCTOROTOR,
    mavlink.MAV_TYPE_TRICOPTER,
    mavlink.MAV_TYPE_COAXIAL,
    mavlink.MAV_TYPE_DODECAROTOR,
    mavlink.MAV_TYPE_DECAROTOR,
    getattr(mavlink, "MAV_TYPE_GENERIC_MULTIROTOR", 43),
}
_VTOL = {
    mavlink.MAV_TYPE_VTOL_DUOROTOR,
    mavlink.MAV_TYPE_VTOL_QUADROTOR,
    mavlink.MAV_TYPE_VTOL_TILTROTOR,
    getattr(mavlink, "MAV_TYPE_VTOL_FIXEDROTOR", 22),
    getattr(mavlink, "MAV_TYPE_VTOL_TAILSITTER", 23),
    getattr(mavlink, "MAV_TYPE_VTOL_TILTWING", 24),
}
# Types that are not vehicles: their HEARTBEATs never create one.
NOT_VEHICLES = {
    mavlink.MAV_TYPE_GCS,
    mavlink.MAV_TYPE_ONBOARD_CONTROLLER,
    mavlink.MAV_TYPE_GIMBAL,
    mavlink.MAV_TYPE_ADSB,
    mavlink.MAV_TYPE_CAMERA,
    mavlink.MAV_TYPE_ANTENNA_TRACKER,
    mavlink.MAV_TYPE_CHARGING_STATION,
    mavlink.MAV_TYPE_FLARM,
    mavlink.MAV_TYPE_SERVO,
    mavlink.MAV_TYPE_ODID,
    mavlink.MAV_TYPE_BATTERY,
    mavlink.MAV_TYPE_PARACHUTE,
    mavlink.MAV_TYPE_LOG,
    mavlink.MAV_TYPE_OSD,
    mavlink.MAV_TYPE_IMU,
    mavlink.MAV_TYPE_GPS,
    mavlink.MAV_TYPE_WINCH,
}


def entity_type_for(mav_type: int) -> str:
    """Our ``entity_type`` for a ``MAV_TYPE``."""
    if mav_type in _MULTIROTOR:
        return "aircraft_multirotor"
    if mav_type in _VTOL:
        return "aircraft_vtol"
    if mav_type in (mavlink.MAV_TYPE_FIXED_WING, mavlink.MAV_TYPE_FLAPPING_WING, mavlink.MAV_TYPE_PARAFOIL):
        return "aircraft_fixed_wing"
    if mav_type == mavlink.MAV_TYPE_HELICOPTER:
        return "aircraft_helicopter"
    if mav_type in (mavlink.MAV_TYPE_AIRSHIP, mavlink.MAV_TYPE_FREE_BALLOON):
        return "aircraft_airship"
    if mav_type == mavlink.MAV_TYPE_GROUND_ROVER:
        return "ground_vehicle_wheeled"
    if mav_type == mavlink.MAV_TYPE_SURFACE_BOAT:
        return "surface_vessel_usv"
    if mav_type == mavlink.MAV_TYPE_SUBMARINE:
        return "underwater_vehicle"
    return "sensor_platform"


def is_plane(mav_type: int) -> bool:
    """Fixed wing (speed changes are airspeed)."""
    return mav_type in (mavlink.MAV_TYPE_FIXED_WING, mavlink.MAV_TYPE_FLAPPING_WING) or mav_type in _VTOL


def is_ground(mav_type: int) -> bool:
    """Rover or boat (no takeoff, hold is HOLD)."""
    return mav_type in (mavlink.MAV_TYPE_GROUND_ROVER, mavlink.MAV_TYPE_SURFACE_BOAT)


@functools.cache
def _mavutil() -> Any:
    # mavutil is heavy to import (≈0.3 s) and only its mode tables are needed: import on first use.
    from pymavlink import mavutil

    return mavutil


def warm_up() -> None:
    """Import the mode tables now (call in a thread: it takes a few hundred ms once)."""
    _mavutil()


def mode_name(autopilot: int, mav_type: int, base_mode: int, custom_mode: int) -> str:
    """The flight mode's name (``GUIDED``, ``RTL``, PX4 ``MISSION`` …), or ``MODE(n)`` when unknown."""
    mu = _mavutil()
    if autopilot == AUTOPILOT_PX4:
        name = str(mu.interpret_px4_mode(base_mode, custom_mode))
        return name if name != "UNKNOWN" else f"MODE({custom_mode})"
    if not base_mode & MODE_FLAG_CUSTOM:
        return f"MODE(0x{base_mode:02x})"
    table = mu.mode_mapping_bynumber(mav_type) or {}
    return str(table.get(custom_mode, f"MODE({custom_mode})"))


def mode_numbers(autopilot: int, mav_type: int, name: str) -> tuple[int, int] | None:
    """``(custom_mode, custom_sub_mode)`` for ``MAV_CMD_DO_SET_MODE``, or None if this vehicle has no such mode."""
    mu = _mavutil()
    name = name.upper()
    if autopilot == AUTOPILOT_PX4:
        entry = mu.px4_map.get(name)
        return (int(entry[1]), int(entry[2])) if entry else None
    table = mu.mode_mapping_byname(mav_type) or {}
    number = table.get(name)
    return (int(number), 0) if number is not None else None


def px4_custom_mode(main: int, sub: int) -> int:
    """PX4's ``custom_mode`` word in HEARTBEAT for a main/sub mode."""
    return ((sub & 0xFF) << 24) | ((main & 0xFF) << 16)


def mode_names(autopilot: int, mav_type: int) -> list[str]:
    """Every mode name this vehicle knows (for messages and the docs)."""
    mu = _mavutil()
    if autopilot == AUTOPILOT_PX4:
        return sorted(mu.px4_map)
    return sorted((mu.mode_mapping_byname(mav_type) or {}).keys())


def command_name(command: int) -> str:
    """``MAV_CMD_NAV_TAKEOFF`` for 22."""
    entry = mavlink.enums["MAV_CMD"].get(command)
    return str(entry.name) if entry is not None else f"MAV_CMD({command})"


def new_parser() -> Any:
    """A MAVLink 2 parser (reads MAVLink 1 too) that reports bad data instead of raising."""
    parser = mavlink.MAVLink(None)
    parser.robust_parsing = True
    return parser


MAGIC_V1, MAGIC_V2 = 0xFE, 0xFD
SIGNED = 0x01  # MAVLINK_IFLAG_SIGNED: a 13-byte signature follows the CRC
Frame = tuple[int, int, int, bytes]  # message id, system id, component id, the whole frame


def split_datagram(data: bytes) -> tuple[list[Frame], int]:
    """The MAVLink frames of one UDP datagram, and how many bytes were not part of a frame.

    Over UDP a frame never spans datagrams, so a datagram is cut into frames from its
    headers alone (no state between datagrams): bytes before a start marker are skipped
    (counted), a frame running past the end is truncated (counted). Nothing is checked
    here beyond the framing: CRCs are checked by ``decode`` or ``crc_ok``.
    """
    frames: list[Frame] = []
    junk = 0
    i, n = 0, len(data)
    while i < n:
        magic = data[i]
        if magic == MAGIC_V2:
            if i + 12 > n:
                return frames, junk + n - i
            incompat = data[i + 2]
            size = 12 + data[i + 1] + (13 if incompat & SIGNED else 0)
            if i + size > n or incompat & ~SIGNED:
                return frames, junk + n - i  # truncated, or flags no MAVLink 2 parser may accept
            frames.append(
                (data[i + 7] | data[i + 8] << 8 | data[i + 9] << 16, data[i + 5], data[i + 6], data[i : i + size])
            )
            i += size
        elif magic == MAGIC_V1:
            size = 8 + data[i + 1] if i + 1 < n else n + 1
            if i + size > n:
                return frames, junk + n - i
            frames.append((data[i + 5], data[i + 3], data[i + 4], data[i : i + size]))
            i += size
        else:
            nxt = [j for j in (data.find(b"\xfd", i), data.find(b"\xfe", i)) if j >= 0]
            j = min(nxt) if nxt else n
            junk += j - i
            i = j
    return frames, junk


def crc_ok(frame: bytes, crc_extra: int) -> bool:
    """Whether a frame's CRC (with its message's CRC_EXTRA) is right, without decoding it."""
    signature = 13 if frame[0] == MAGIC_V2 and frame[2] & SIGNED else 0
    end = len(frame) - 2 - signature
    crc = mavlink.x25crc(frame[1:end] + bytes((crc_extra,))).crc
    return bool(crc == frame[end] | frame[end + 1] << 8)


def message_class(msgid: int) -> Any:
    """The dialect's class for a message id (``msgname``, ``crc_extra``), or None if it has none."""
    return mavlink.mavlink_map.get(msgid)


def reset_parser(parser: Any) -> None:
    """Drop whatever partial frame the parser holds (the next byte starts afresh)."""
    parser.buf = bytearray()
    parser.buf_index = 0
    parser.expected_length = mavlink.HEADER_LEN_V1 + 2
    parser.have_prefix_error = False


def new_sender(sysid: int, compid: int) -> Any:
    """A MAVLink 2 encoder for our own messages (``msg.pack(sender)``; call ``next_seq`` after each)."""
    return mavlink.MAVLink(None, srcSystem=sysid, srcComponent=compid)


def pack(sender: Any, message: Any, *, mavlink1: bool = False) -> bytes:
    """Encode ``message`` with the sender's ids and sequence number, then advance the sequence."""
    data = bytes(message.pack(sender, force_mavlink1=mavlink1))
    sender.seq = (sender.seq + 1) % 256
    return data
