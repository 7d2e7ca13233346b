"""The simulator moves believably, drains batteries, obeys commands and injects faults."""

from __future__ import annotations

import asyncio
import math
import subprocess
from typing import Any

import cv2
import numpy as np

from app.runtime import Runtime
from core import topology
from core.contracts.commands import CommandMessage
from fabric.server import EmbeddedNats
from tests.conftest import OVERWATCH
from tests.helpers import dlq, eventually, seed, state
from workers.simulator import FaultConfig, SimEntity, Simulator, distance_bearing, make_fleet


def _cmd(command: str, **params: Any) -> CommandMessage:
    return CommandMessage(
        command_id="c1", command=command, params=params, org_id="o", entity_id="e", issued_at="", expires_at=""
    )


def test_entities_move_at_plausible_speeds_and_drain_battery() -> None:
    fleet = make_fleet(
        "o",
        [
            ("a", "aircraft_multirotor"),
            ("b", "aircraft_fixed_wing"),
            ("c", "ground_vehicle_wheeled"),
            ("d", "isr_sensor"),
        ],
        (37.0, -122.0),
    )
    start = {e.entity_id: (e.lat, e.lon, e.battery) for e in fleet}
    for _ in range(100):
        for e in fleet:
            e.step(0.5)
    for e in fleet:
        moved, _ = distance_bearing(start[e.entity_id][0], start[e.entity_id][1], e.lat, e.lon)
        if e.kind == "isr_sensor":
            assert moved == 0
            continue
        assert 0 < e.speed < 30, (e.kind, e.speed)
        assert moved > 1 or e.kind == "ground_vehicle_wheeled"
        assert e.battery < start[e.entity_id][2]
        home_dist, _ = distance_bearing(*e.home, e.lat, e.lon)
        assert home_dist < 1500


def test_goto_then_rtl_then_land() -> None:
    e = make_fleet("o", [("a", "aircraft_multirotor")], (37.0, -122.0))[0]
    status, _ = e.command(_cmd("goto", latitude=e.lat + 0.001, longitude=e.lon))
    assert status == "accepted" and e.mode == "GUIDED"
    for _ in range(200):
        e.step(0.5)
    assert e.task == "hold" and any(k.startswith("done:") for k in e.pending)
    e.pending.clear()
    e.command(
        CommandMessage(
            command_id="c2", command="rtl", params={}, org_id="o", entity_id="e", issued_at="", expires_at=""
        )
    )
    for _ in range(600):
        e.step(0.5)
    assert e.task == "landed" and not e.armed and e.alt == 0.0
    assert "done:c2" in e.pending
    assert e.command(_cmd("self_destruct"))[0] == "rejected"


def test_camera_rejects_flight_commands() -> None:
    cam = SimEntity("c", "o", "isr_sensor", (37.0, -122.0), __import__("random").Random(1))
    assert cam.command(_cmd("goto", latitude=1, longitude=2))[0] == "rejected"
    assert math.isclose(cam.speed, 0.0)


async def test_fault_injection_reaches_the_dlq_and_good_traffic_flows(runtime: Runtime) -> None:
    (e0,) = await seed(runtime, entities=1)
    assert runtime.nc is not None
    sim = Simulator(
        runtime.nc,
        make_fleet("org1", [(e0, "aircraft_multirotor")], (37.0, -122.0)),
        rate_hz=20,
        faults=FaultConfig(bad_payload_rate=0.3),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(sim.run(stop, duration=1.5))
    await task
    assert sim.bad_published > 0 and sim.published > 0
    await eventually(lambda: _dead_at_least(runtime, sim.bad_published), what="bad payloads dead-lettered")
    doc = await state(runtime, e0)
    assert doc is not None and doc["is_live"]


async def _dead_at_least(runtime: Runtime, n: int) -> bool:
    return len(await dlq(runtime.js)) >= n


async def test_simulate_command_line(runtime: Runtime, nats_server: EmbeddedNats) -> None:
    await seed(runtime, org_id="cli", entities=0)
    proc = await asyncio.create_subprocess_exec(
        OVERWATCH,
        "simulate",
        "--nats-url",
        nats_server.url,
        "--org",
        "cli",
        "--count",
        "3",
        "--register",
        "--rate",
        "5",
        "--duration",
        "2",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, out.decode()
    for i in range(1, 4):
        doc = await eventually(lambda i=i: state(runtime, f"sim-{i:04d}"), what=f"sim-{i:04d} state")
        assert doc["org_id"] == "cli"
    bad = await asyncio.create_subprocess_exec(
        OVERWATCH, "simulate", "--org", "bad org", stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(bad.communicate(), 30)
    assert bad.returncode == 2 and b"organisation id" in out


async def test_video_frames_are_tracked_and_bad_frames_dead_lettered(runtime: Runtime) -> None:
    (e0,) = await seed(runtime, entities=1)
    ok, jpeg = cv2.imencode(".jpg", np.zeros((48, 64, 3), dtype=np.uint8))
    assert ok
    assert runtime.nc is not None
    for _ in range(10):
        await runtime.nc.publish(topology.video_subject(e0), jpeg.tobytes(), headers={"Width": "64", "Height": "48"})
    source = await eventually(lambda: runtime.services.video.source(e0), what="video source")
    assert source.live and source.frames >= 1 and source.width == 64
    await runtime.nc.publish(topology.video_subject(e0), b"GIF89a not a jpeg")
    await runtime.nc.publish(topology.video_subject("stranger"), jpeg.tobytes())
    reasons = await eventually(lambda: _reasons(runtime), what="video dead letters")
    assert any("not a JPEG" in r for r in reasons) and any("unknown entity" in r for r in reasons)


async def _reasons(runtime: Runtime) -> list[str] | None:
    msgs = [m for m in await dlq(runtime.js) if (m.headers or {}).get("Overwatch-Dlq-Stream") == "VIDEO"]
    return [m.headers["Overwatch-Dlq-Reason"] for m in msgs if m.headers] if len(msgs) >= 2 else None
