"""Acceptance 6: malformed frames, unknown messages and a clashing system id are counted and logged; nothing breaks.

Everything arrives over real UDP: random bytes, truncated and corrupted frames, a message id no dialect knows, valid
messages the bridge does not map, another GCS, and a second vehicle using a live vehicle's system id on another link.
"""

from __future__ import annotations

import logging
import random
import struct
from typing import Any

import pytest

from app.runtime import Runtime
from db import commands as commands_db
from services.mavlink import protocol
from services.mavlink.emulator import Emulator
from services.schemas import CommandCreate
from tests.helpers import eventually

M = protocol.MAV


def _unknown_frame(msgid: int = 60123) -> bytes:
    """A well-formed MAVLink 2 frame whose message id is in no dialect (its CRC cannot be checked)."""
    payload = b"\x01\x02\x03\x04"
    header = struct.pack("<BBBBBBBHB", 0xFD, len(payload), 0, 0, 7, 41, 1, msgid & 0xFFFF, msgid >> 16)
    return header + payload + b"\x00\x00"


async def test_garbage_unknown_and_clashing_ids_are_counted_and_logged(
    runtime: Runtime, make_bridge: Any, make_vehicle: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="overwatch.mavlink")
    bridge = await make_bridge(links=2)
    vehicle: Emulator = await make_vehicle(bridge, link=0, sysid=41)
    await eventually(lambda: (runtime.services.state_cache.get("mav-41") or {}).get("is_live"), what="live")

    rng = random.Random(15)
    good = protocol.pack(protocol.new_sender(41, 1), M.MAVLink_vfr_hud_message(1.0, 2.0, 90, 10, 50.0, 0.0))
    corrupted = bytearray(good)
    corrupted[-1] ^= 0xFF  # bad CRC
    bad_frames = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))) for _ in range(40)] + [
        good[:7],
        bytes(corrupted),
        b"\xfd\xff" + b"\x00" * 8,
        b"",
    ]
    for frame in bad_frames:
        vehicle.send_raw(frame)
    sender = protocol.new_sender(41, 1)
    for _ in range(5):
        vehicle.send_raw(_unknown_frame())
        vehicle.send_raw(protocol.pack(sender, M.MAVLink_rc_channels_raw_message(0, 0, *([1500] * 8), 255)))
    other_gcs = protocol.new_sender(250, 190)
    vehicle.send_raw(protocol.pack(other_gcs, M.MAVLink_heartbeat_message(M.MAV_TYPE_GCS, 8, 0, 0, 4, 3)))

    # A second vehicle with the same system id on the other link: counted, logged, dropped.
    twin: Emulator = await make_vehicle(bridge, link=1, sysid=41)
    twin.airborne(altitude=99.0, mode="AUTO", task="orbit")
    await eventually(lambda: bridge.stats.clashes >= 10, what="clashes counted")
    await eventually(lambda: bridge.stats.unknown["UNKNOWN_60123"] == 5, what="unknown ids counted")
    await eventually(lambda: bridge.stats.unmapped["RC_CHANNELS_RAW"] == 5, what="unmapped counted")
    assert bridge.stats.malformed >= 10
    assert bridge.stats.not_vehicle >= 1 and 250 not in bridge.vehicles
    text = caplog.text
    assert "malformed frame" in text and "is not in the dialect" in text
    assert "system id 41 also heard on" in text and "SYSID_THISMAV" in text

    # Nothing crashed: the first vehicle's state is still its own, and it still takes commands.
    view = runtime.services.state_cache.get("mav-41") or {}
    assert view["position"]["global"]["altitude_relative"] == 0.0 and view["vehicle_status"]["mode"] == "STABILIZE"
    sent = await runtime.services.commands.send("org1", "mav-41", CommandCreate(command="arm"))

    async def completed() -> bool:
        row = await commands_db.get_command(runtime.db, sent.command_id)
        return row is not None and row.status == "completed"

    await eventually(completed, what="command still works")
    assert vehicle.armed and not twin.received
    assert all(task.get_name() != "mavlink-flush" or not task.done() for task in bridge._tasks)


def test_datagram_framing_without_decoding() -> None:
    """Whole frames are cut from a datagram by their headers; garbage and truncation are counted, CRCs checked."""
    v2 = protocol.new_sender(7, 1)
    beat = protocol.pack(v2, M.MAVLink_heartbeat_message(2, 3, 81, 5, 3, 3))
    imu = protocol.pack(v2, M.MAVLink_raw_imu_message(1, 1, 2, 3, 4, 5, 6, 7, 8, 9))
    v1 = protocol.pack(protocol.new_sender(9, 1), M.MAVLink_heartbeat_message(2, 3, 81, 5, 3, 3), mavlink1=True)
    frames, junk = protocol.split_datagram(b"\x00garbage" + beat + v1 + imu + imu[:9])
    assert [(f[0], f[1], len(f[3])) for f in frames] == [(0, 7, len(beat)), (0, 9, len(v1)), (27, 7, len(imu))]
    assert junk == 8 + 9
    assert protocol.crc_ok(frames[2][3], protocol.message_class(27).crc_extra)
    broken = bytearray(imu)
    broken[12] ^= 0x55
    assert not protocol.crc_ok(bytes(broken), protocol.message_class(27).crc_extra)
    assert protocol.split_datagram(b"\xfd\x09\x04" + bytes(20)) == ([], 23)  # unknown incompat flag
    assert protocol.split_datagram(b"") == ([], 0)
