"""Acceptance 2 and 3: our commands become the MAVLink commands MAVLink specifies, and MAV_RESULT drives the lifecycle.

Commands go the whole way: CommandService (as the console and the API send them) → NATS → the bridge → COMMAND_LONG /
COMMAND_INT over UDP → the emulated autopilot → COMMAND_ACK → the bridge's ack on NATS → the command's status.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import httpx
import pytest

from app.runtime import Runtime
from db import commands as commands_db
from db.commands import CommandRow
from services.mavlink import protocol
from services.mavlink.emulator import Emulator
from services.schemas import CommandCreate
from tests.helpers import eventually
from tests.mavlink.conftest import ORG

M = protocol.MAV


async def _send(runtime: Runtime, entity_id: str, command: str, **params: Any) -> str:
    view = await runtime.services.commands.send(ORG, entity_id, CommandCreate(command=command, params=params))
    return view.command_id


async def _row(runtime: Runtime, command_id: str) -> CommandRow:
    row = await commands_db.get_command(runtime.db, command_id)
    assert row is not None
    return row


async def _final(runtime: Runtime, command_id: str, timeout: float = 10.0) -> CommandRow:
    async def done() -> CommandRow | None:
        row = await _row(runtime, command_id)
        return row if row.status in ("completed", "failed", "expired") else None

    result: CommandRow = await eventually(done, timeout=timeout, what=f"command {command_id} finished")
    return result


async def _live(runtime: Runtime, entity_id: str) -> None:
    await eventually(
        lambda: (runtime.services.state_cache.get(entity_id) or {}).get("is_live"), what=f"{entity_id} live"
    )


async def test_arm_takeoff_goto_rtl_are_what_mavlink_specifies(
    runtime: Runtime, make_bridge: Any, make_vehicle: Any
) -> None:
    bridge = await make_bridge()
    vehicle: Emulator = await make_vehicle(bridge, sysid=2, climb_rate=5.0)
    await _live(runtime, "mav-2")

    arm = await _final(runtime, await _send(runtime, "mav-2", "arm"))
    assert (arm.status, arm.detail) == ("completed", "ACCEPTED (MAV_CMD_COMPONENT_ARM_DISARM)")
    (rec,) = vehicle.commands_named("MAV_CMD_COMPONENT_ARM_DISARM")
    assert (rec.kind, rec.params[0], rec.params[1], rec.confirmation) == ("COMMAND_LONG", 1.0, 0.0, 0)
    assert (rec.target_system, rec.target_component, rec.source_system) == (2, 1, 255)

    # Takeoff: ArduCopter needs GUIDED first, then NAV_TAKEOFF with the altitude in param7; the vehicle answers
    # IN_PROGRESS with its progress while it climbs (→ accepted with the %), then ACCEPTED (→ completed).
    takeoff_id = await _send(runtime, "mav-2", "takeoff", altitude=12.0)
    progress = await eventually(
        lambda: _status_is(runtime, takeoff_id, "accepted"), timeout=5, what="takeoff accepted while climbing"
    )
    assert progress.detail.startswith("IN_PROGRESS") and progress.detail.endswith("(MAV_CMD_NAV_TAKEOFF 12 m)")
    takeoff = await _final(runtime, takeoff_id)
    assert (takeoff.status, takeoff.detail) == ("completed", "ACCEPTED (MAV_CMD_NAV_TAKEOFF 12 m)")
    (mode,) = vehicle.commands_named("MAV_CMD_DO_SET_MODE")
    assert (mode.kind, mode.params[0], mode.params[1]) == (
        "COMMAND_LONG",
        float(M.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED),
        4.0,
    )
    (climb,) = vehicle.commands_named("MAV_CMD_NAV_TAKEOFF")
    assert climb.kind == "COMMAND_LONG" and climb.params[6] == 12.0
    assert [r for c, r, _p in vehicle.acks if c == M.MAV_CMD_NAV_TAKEOFF][0] == M.MAV_RESULT_IN_PROGRESS

    # Goto: DO_REPOSITION as COMMAND_INT, lat/lon in 1e7 degrees, altitude relative to home (ArduPilot's frame).
    goto_id = await _send(runtime, "mav-2", "goto", latitude=37.4281, longitude=-122.1690, altitude=15.0)
    goto = await _final(runtime, goto_id)
    assert (goto.status, goto.detail.split(" ")[0]) == ("completed", "ACCEPTED")
    (repo,) = vehicle.commands_named("MAV_CMD_DO_REPOSITION")
    assert (repo.kind, repo.frame) == ("COMMAND_INT", M.MAV_FRAME_GLOBAL_RELATIVE_ALT)
    assert (repo.params[4], repo.params[5], repo.params[6]) == (374281000.0, -1221690000.0, 15.0)
    assert repo.params[0] == -1.0 and repo.params[1] == float(protocol.REPOSITION_CHANGE_MODE)
    assert math.isnan(repo.params[3])  # yaw unchanged

    rtl = await _final(runtime, await _send(runtime, "mav-2", "rtl"))
    assert (rtl.status, rtl.detail) == ("completed", "ACCEPTED (MAV_CMD_NAV_RETURN_TO_LAUNCH)")
    (home,) = vehicle.commands_named("MAV_CMD_NAV_RETURN_TO_LAUNCH")
    assert home.kind == "COMMAND_LONG" and home.params == (0.0,) * 7
    await eventually(
        lambda: (runtime.services.state_cache.get("mav-2") or {}).get("vehicle_status", {}).get("mode") == "RTL",
        what="mode RTL in EntityState",
    )


async def _status_is(runtime: Runtime, command_id: str, status: str) -> CommandRow | None:
    row = await _row(runtime, command_id)
    return row if row.status == status else None


async def test_denied_unsupported_and_no_response_fail_with_mavlinks_word(
    runtime: Runtime, make_bridge: Any, make_vehicle: Any
) -> None:
    bridge = await make_bridge()  # 0.3 s per attempt, 2 resends
    grounded: Emulator = await make_vehicle(bridge, sysid=3, prearm_ok=False)
    mute: Emulator = await make_vehicle(
        bridge,
        sysid=4,
        silent={M.MAV_CMD_COMPONENT_ARM_DISARM},
        results={M.MAV_CMD_NAV_LAND: 1, M.MAV_CMD_NAV_RETURN_TO_LAUNCH: 6},  # TEMPORARILY_REJECTED, CANCELLED
    )
    flaky: Emulator = await make_vehicle(
        bridge,
        sysid=5,
        drop_first={M.MAV_CMD_COMPONENT_ARM_DISARM: 1},
        results={M.MAV_CMD_DO_CHANGE_SPEED: M.MAV_RESULT_UNSUPPORTED},
    )
    await asyncio.gather(*(_live(runtime, e) for e in ("mav-3", "mav-4", "mav-5")))
    denied, unsupported, silent, resent, no_form, no_mode, later, cancelled = await asyncio.gather(
        _final(runtime, await _send(runtime, "mav-3", "arm")),
        _final(runtime, await _send(runtime, "mav-5", "set_speed", speed=5.0)),
        _final(runtime, await _send(runtime, "mav-4", "arm")),
        _final(runtime, await _send(runtime, "mav-5", "arm")),
        _final(runtime, await _send(runtime, "mav-5", "self_destruct")),
        _final(runtime, await _send(runtime, "mav-5", "set_mode", mode="WARP")),
        _final(runtime, await _send(runtime, "mav-4", "land")),
        _final(runtime, await _send(runtime, "mav-4", "rtl")),
    )
    assert denied.status == "failed" and denied.detail.startswith("DENIED (MAV_CMD_COMPONENT_ARM_DISARM)")
    assert "PreArm: GPS: need 3D fix" in denied.detail  # what ArduPilot says alongside the DENIED
    assert (unsupported.status, unsupported.detail) == ("failed", "UNSUPPORTED (MAV_CMD_DO_CHANGE_SPEED)")
    assert silent.status == "failed" and silent.detail == "no response after 3 attempts (MAV_CMD_COMPONENT_ARM_DISARM)"
    assert [r.confirmation for r in mute.commands_named("MAV_CMD_COMPONENT_ARM_DISARM")] == [0, 1, 2]
    assert (resent.status, resent.detail) == ("completed", "ACCEPTED (MAV_CMD_COMPONENT_ARM_DISARM)")
    assert [r.confirmation for r in flaky.commands_named("MAV_CMD_COMPONENT_ARM_DISARM")] == [0, 1]
    assert no_form.status == "failed" and no_form.detail.startswith("UNSUPPORTED: no MAVLink form")
    assert no_mode.status == "failed" and "mode WARP does not exist" in no_mode.detail
    assert not flaky.commands_named("MAV_CMD_DO_SET_MODE")  # refused here, never sent
    assert (later.status, later.detail) == ("failed", "TEMPORARILY_REJECTED (MAV_CMD_NAV_LAND)")
    assert (cancelled.status, cancelled.detail) == ("failed", "CANCELLED (MAV_CMD_NAV_RETURN_TO_LAUNCH)")
    assert grounded.armed is False and bridge.commands.resent >= 3


async def test_px4_takeoff_altitude_is_amsl_and_forced_disarm_is_admin_only(
    runtime: Runtime, make_bridge: Any, make_vehicle: Any, client: httpx.AsyncClient
) -> None:
    bridge = await make_bridge()
    px4: Emulator = await make_vehicle(bridge, sysid=6, autopilot=protocol.AUTOPILOT_PX4)
    await _live(runtime, "mav-6")
    await eventually(lambda: bridge.vehicles[6].home_alt_msl == 30.0, what="home known")
    assert (await _final(runtime, await _send(runtime, "mav-6", "arm"))).status == "completed"
    takeoff = await _final(runtime, await _send(runtime, "mav-6", "takeoff", altitude=8.0))
    assert takeoff.status == "completed"
    (rec,) = px4.commands_named("MAV_CMD_NAV_TAKEOFF")
    assert rec.params[6] == 38.0 and math.isnan(rec.params[4]) and math.isnan(rec.params[5])  # AMSL, "here"
    assert not px4.commands_named("MAV_CMD_DO_SET_MODE")  # PX4 takes off from any mode

    # A forced disarm (param2 = 21196) needs admin rights in the organisation: an operator's key gets 403.
    operator = await runtime.services.apikeys.create("tests", "op", ["read", "commands"], ORG)
    url = f"/api/v1/organizations/{ORG}/entities/mav-6/commands"
    body = {"command": "disarm", "params": {"force": True}}
    refused = await client.post(url, json=body, headers={"Authorization": f"Bearer {operator.key}"})
    assert refused.status_code == 403, refused.text
    sent = await client.post(url, json=body)  # the fixture's key is an admin's
    assert sent.status_code == 202, sent.text
    disarm = await _final(runtime, sent.json()["command_id"])
    assert (disarm.status, disarm.detail) == ("completed", "ACCEPTED (MAV_CMD_COMPONENT_ARM_DISARM forced)")
    (forced,) = px4.commands_named("MAV_CMD_COMPONENT_ARM_DISARM")[1:]
    assert (forced.params[0], forced.params[1]) == (0.0, float(protocol.FORCE_DISARM_MAGIC))


@pytest.mark.parametrize("force", [False])
def test_translation_needs_no_network(force: bool) -> None:
    """Each command's MAVLink form, for the three autopilot shapes the bridge distinguishes."""
    from services.mavlink.commands import Untranslatable, translate
    from services.mavlink.links import Link
    from services.mavlink.vehicle import Vehicle

    def vehicle(autopilot: int, mav_type: int, mode: str) -> Vehicle:
        v = Vehicle(1, 1, "mav-1", "v", Link.__new__(Link), None)
        v.autopilot, v.mav_type, v.mode = autopilot, mav_type, mode
        return v

    copter = vehicle(protocol.AUTOPILOT_ARDUPILOT, M.MAV_TYPE_QUADROTOR, "GUIDED")
    rover = vehicle(protocol.AUTOPILOT_ARDUPILOT, M.MAV_TYPE_GROUND_ROVER, "MANUAL")
    px4 = vehicle(protocol.AUTOPILOT_PX4, M.MAV_TYPE_QUADROTOR, "POSCTL")
    assert [s.command for s in translate("takeoff", {"altitude": 5}, copter)] == [M.MAV_CMD_NAV_TAKEOFF]  # in GUIDED
    assert translate("hold", {}, rover)[0].params[1] == 4.0  # Rover HOLD
    assert translate("hold", {}, copter)[0].params[1] == 5.0  # Copter LOITER
    hold = translate("hold", {}, px4)[0]
    assert (hold.params[1], hold.params[2]) == (4.0, 3.0)  # PX4 AUTO.LOITER (main 4, sub 3)
    assert translate("resume", {}, px4)[0].params[2] == 4.0  # AUTO.MISSION
    assert translate("set_speed", {"speed": 7}, copter)[0].params[:3] == (1.0, 7.0, -1.0)
    assert translate("disarm", {"force": force}, copter)[0].params[1] == 0.0
    with pytest.raises(Untranslatable):
        translate("takeoff", {"altitude": 5}, rover)
