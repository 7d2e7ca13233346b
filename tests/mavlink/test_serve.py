"""The bridge inside ``overwatch serve``: configured by MAVLINK_* (OVERWATCH_MAVLINK=true), and the demo's vehicle."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from app.demo import DEMO_MAV_NAME, DEMO_ORG_ID, seed_demo, start_demo_mavlink
from app.mavlink_serve import bridge_settings, start_bridge
from app.runtime import Runtime, StartupError
from services.mavlink.emulator import Emulator
from services.schemas import OrgCreate
from tests.helpers import eventually


def _udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_configured_in_process_bridge_stops_with_the_server(
    make_runtime: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    port = _udp_port()
    monkeypatch.setenv("MAVLINK_ORG", "fieldops")
    monkeypatch.setenv("MAVLINK_LISTEN", f"udp:127.0.0.1:{port}")
    rt: Runtime = await make_runtime(mavlink=True)
    await rt.services.registry.create_org(OrgCreate(org_id="fieldops", name="Field ops", org_type="military"))
    bridge = await start_bridge(rt, bridge_settings(rt, DEMO_ORG_ID))  # MAVLINK_ORG wins over the demo's
    assert bridge.org_id == "fieldops" and bridge.udp_address() == ("127.0.0.1", port)
    vehicle = Emulator(("127.0.0.1", port), sysid=61)
    await vehicle.start()
    try:
        view = await eventually(lambda: rt.services.state_cache.get("mav-61"), what="vehicle through serve's bridge")
        assert view["org_id"] == "fieldops"
    finally:
        await vehicle.stop()
    await rt.stop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", port))  # the bridge let its port go with the server
    monkeypatch.setenv("MAVLINK_LISTEN", "serial:/dev/nothing")
    with pytest.raises(StartupError, match="MAVLINK_LISTEN"):
        bridge_settings(rt)


async def test_demo_runs_one_emulated_vehicle_through_the_bridge(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("MAVLINK_ORG", "MAVLINK_LISTEN", "MAVLINK_CONNECT", "MAVLINK_SERIAL", "MAVLINK_MAPPING"):
        monkeypatch.delenv(name, raising=False)
    await seed_demo(runtime)
    bridge, vehicle = await start_demo_mavlink(runtime)
    assert [link.spec.host for link in bridge.links] == ["127.0.0.1"]  # only its private port, not 14550
    card = await eventually(lambda: runtime.services.console.card("mav-1"), what="demo MAVLink vehicle")
    assert (card.name, card.org_id) == (DEMO_MAV_NAME, DEMO_ORG_ID)
    await eventually(lambda: (runtime.services.console.card("mav-1") or card).readiness == "ready", what="Ready")
    assert runtime.services.console.card("demo-uav-1") is not None  # the demo's other entities are untouched
    assert vehicle.sent.get("HEARTBEAT", 0) >= 1
