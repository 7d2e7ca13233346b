"""Acceptance 1 and identity: a vehicle appears within 2 s of its first HEARTBEAT and its state follows it at 10 Hz.

Real parts only: the bridge on a 127.0.0.1 UDP port, pymavlink vehicles sending real frames, the runtime's workers
writing EntityState in a real nats-server, and the console's fleet page over HTTP.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import msgspec
from bs4 import BeautifulSoup

from app.runtime import Runtime
from services.mavlink import protocol
from services.mavlink.mapping import Binding
from services.schemas import EntityCreate
from tests.helpers import eventually, state
from tests.mavlink.conftest import ORG


def _view(runtime: Runtime, entity_id: str) -> dict[str, Any]:
    return runtime.services.state_cache.get(entity_id) or {}


async def test_vehicle_appears_within_2s_and_its_state_follows_position_at_10hz(
    runtime: Runtime, make_bridge: Any, make_vehicle: Any, client: httpx.AsyncClient
) -> None:
    bridge = await make_bridge(mapping={7: Binding(name="Hawk 7")})
    vehicle = await make_vehicle(bridge, sysid=7, position_hz=10.0)
    await eventually(lambda: vehicle.first_heartbeat_at, what="first HEARTBEAT sent")
    card = await eventually(lambda: runtime.services.console.card("mav-7"), timeout=5, what="fleet card")
    appeared = time.monotonic() - (vehicle.first_heartbeat_at or 0)
    assert appeared <= 2.0, f"in the fleet {appeared:.2f}s after the first HEARTBEAT"
    assert (card.name, card.entity_type, card.org_id) == ("Hawk 7", "aircraft_multirotor", ORG)
    page = BeautifulSoup((await client.get("/fleet")).text, "html.parser")
    assert page.select_one("#row-mav-7") is not None

    # Scopes from HEARTBEAT, SYS_STATUS, GPS_RAW_INT, BATTERY_STATUS, HOME_POSITION, EXTENDED_SYS_STATE.
    view = await eventually(lambda: _view(runtime, "mav-7").get("navigation") and _view(runtime, "mav-7"), what="home")
    status, pos = view["vehicle_status"], view["position"]["global"]
    assert (status["mode"], status["armed"], status["autopilot"], status["landed_state"]) == ("STABILIZE", False, 3, 1)
    assert status["link"]["sysid"] == 7 and status["link"]["comm_lost"] is False and status["link"]["mavlink"] == 2
    assert (pos["fix_type"], pos["satellites_visible"], pos["hdop"]) == (3, 14, 0.8)
    assert abs(pos["latitude"] - 37.4275) < 1e-6 and pos["altitude_msl"] == 30.0
    assert view["power"]["battery_remaining"] == 96.0 and len(view["power"]["cells"]) == 4
    assert view["navigation"]["home"]["altitude_msl"] == 30.0
    assert view["attitude"]["euler"]["yaw"] == 0.0 and "groundspeed" in view["vfr"]

    # Moving at 10 Hz: every position reaches the stored EntityState (the server allows 25 writes/s here).
    vehicle.airborne(altitude=20.0, mode="AUTO", task="orbit")
    await eventually(lambda: _view(runtime, "mav-7")["vehicle_status"]["mode"] == "AUTO", what="mode AUTO")
    watcher = await runtime.kv_state.watch("mav-7")
    seen: set[tuple[float, float]] = set()
    sent_before = vehicle.sent["GLOBAL_POSITION_INT"]
    started = time.monotonic()
    try:
        while time.monotonic() - started < 2.0:
            try:
                entry = await asyncio.wait_for(watcher.updates(), 0.5)
            except TimeoutError:
                continue
            if entry is None or not entry.value:
                continue
            doc = msgspec.json.decode(entry.value)
            glob = (doc.get("position") or {}).get("global") or {}
            seen.add((glob.get("latitude"), glob.get("longitude")))
    finally:
        await watcher.stop()
    sent = vehicle.sent["GLOBAL_POSITION_INT"] - sent_before
    assert sent >= 18
    assert len(seen) >= 18, f"{len(seen)} distinct positions applied in 2 s of {sent} sent"
    assert bridge.stats.malformed == 0 and bridge.stats.clashes == 0


async def test_statustext_mavlink1_px4_modes_and_a_binding_to_an_existing_entity(
    runtime: Runtime, make_bridge: Any, make_vehicle: Any
) -> None:
    bridge = await make_bridge(mapping={9: Binding(entity_id="existing-1", name="ignored for a bound one")})
    await runtime.services.registry.create_entity(
        ORG, EntityCreate(entity_id="existing-1", name="Old airframe", entity_type="aircraft_vtol")
    )
    px4 = await make_vehicle(bridge, sysid=9, autopilot=protocol.AUTOPILOT_PX4, mavlink1=True)
    plane = await make_vehicle(bridge, sysid=11, mav_type=protocol.MAV.MAV_TYPE_FIXED_WING)
    plane.mode = "FBWA"
    view = await eventually(lambda: _view(runtime, "existing-1").get("vehicle_status"), what="bound entity state")
    assert view["mode"] == "POSCTL" and view["link"]["mavlink"] == 1 and view["link"]["autopilot"] == "PX4"
    px4.statustext(protocol.MAV.MAV_SEVERITY_WARNING, "Preflight Fail: low battery")
    messages = await eventually(
        lambda: (_view(runtime, "existing-1").get("vehicle_status") or {}).get("messages"), what="STATUSTEXT kept"
    )
    assert messages[-1]["severity"] == "WARNING" and messages[-1]["text"] == "Preflight Fail: low battery"
    doc = await state(runtime, "existing-1")
    assert doc is not None and doc["name"] == "Old airframe" and doc["entity_type"] == "aircraft_vtol"
    assert runtime.services.console.card("mav-9") is None  # bound: no second entity
    plane_view = await eventually(lambda: _view(runtime, "mav-11").get("vehicle_status"), what="plane state")
    assert plane_view["mode"] == "FBWA" and _view(runtime, "mav-11")["entity_type"] == "aircraft_fixed_wing"


async def test_registration_respects_the_per_org_entity_limit(
    make_runtime: Any, make_vehicle: Any, tmp_path: Any
) -> None:
    from services.mavlink.bridge import Bridge
    from services.mavlink.config import LinkSpec, MavlinkSettings
    from services.schemas import OrgCreate
    from tests.helpers import dlq

    rt: Runtime = await make_runtime(max_entities_per_org=1)
    await rt.services.registry.create_org(OrgCreate(org_id="tiny", name="Tiny", org_type="military"))
    await rt.services.registry.create_entity("tiny", EntityCreate(entity_id="only-one", entity_type="sensor_platform"))
    assert rt.nc is not None
    bridge = Bridge(MavlinkSettings(org_id="tiny", listen=""), rt.nc, links=[LinkSpec("udp-listen", "127.0.0.1", 0)])
    await bridge.start()
    try:
        vehicle = await make_vehicle(bridge, sysid=4)
        letters = await eventually(
            lambda: _reasons(dlq(rt.js)), timeout=10, what="the created event dead-lettered with the reason"
        )
        assert any("limit of 1 entities" in r for r in letters), letters
        await eventually(lambda: vehicle.sent.get("HEARTBEAT", 0) >= 2, what="vehicle keeps talking")
        assert bridge.vehicles[4].registered is False and bridge.stats.published == 0  # nothing for the DLQ to eat
    finally:
        await bridge.stop()


async def _reasons(letters: Any) -> list[str]:
    return [(m.headers or {}).get("Overwatch-Dlq-Reason", "") for m in await letters]
