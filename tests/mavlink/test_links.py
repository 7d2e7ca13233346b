"""Every kind of link: UDP listen (the other tests), UDP connect, TCP connect and a serial device (a pty), both ways."""

from __future__ import annotations

import asyncio
import os
import socket
import tty
from typing import Any

from app.runtime import Runtime
from services.mavlink import protocol
from services.mavlink.bridge import Bridge
from services.mavlink.config import LinkSpec, MavlinkSettings
from tests.helpers import eventually

M = protocol.MAV


def _vehicle_frames(sysid: int) -> bytes:
    sender = protocol.new_sender(sysid, 1)
    beat = M.MAVLink_heartbeat_message(M.MAV_TYPE_QUADROTOR, protocol.AUTOPILOT_ARDUPILOT, 81, 5, 3, 3)
    pos = M.MAVLink_global_position_int_message(0, 374000000 + sysid, -1221000000, 40000, 10000, 0, 0, 0, 0)
    return protocol.pack(sender, beat) + protocol.pack(sender, pos)


def _gcs_heartbeats(data: bytes) -> int:
    parser = protocol.new_parser()
    msgs = parser.parse_buffer(data) or []
    return sum(1 for m in msgs if m.get_type() == "HEARTBEAT" and m.type == M.MAV_TYPE_GCS and m.get_srcSystem() == 255)


async def test_udp_connect_tcp_and_serial_links_carry_vehicles_both_ways(runtime: Runtime, make_bridge: Any) -> None:
    # A "router" UDP socket the bridge connects to: it hears the GCS HEARTBEAT first, then answers.
    router = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    router.bind(("127.0.0.1", 0))
    router.setblocking(False)
    # A TCP server standing in for SITL's port 5760.
    received_tcp = bytearray()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for _ in range(100):
                frames = _vehicle_frames(52)
                writer.write(frames[:7])  # split frames: a stream carries partial frames across reads
                await writer.drain()
                await asyncio.sleep(0.01)  # traffic shaping (the rest of the frame comes later), not a wait
                writer.write(frames[7:])
                await writer.drain()
                try:
                    received_tcp.extend(await asyncio.wait_for(reader.read(4096), 0.1))
                except TimeoutError:
                    pass
        except ConnectionError:
            pass  # the bridge went away at the end of the test
        finally:
            writer.close()

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    tcp_port = server.sockets[0].getsockname()[1]
    master, slave = os.openpty()
    tty.setraw(master)
    os.set_blocking(master, False)
    links = [
        LinkSpec("udp-connect", "127.0.0.1", router.getsockname()[1]),
        LinkSpec("tcp", "127.0.0.1", tcp_port),
        LinkSpec("serial", device=os.ttyname(slave), baud=115200),
    ]
    assert runtime.nc is not None  # (make_bridge: the organisation exists; this bridge has other links)
    bridge = Bridge(MavlinkSettings(org_id="org1", listen=""), runtime.nc, links=links)
    await bridge.start()
    loop = asyncio.get_running_loop()
    try:
        data, addr = await asyncio.wait_for(loop.sock_recvfrom(router, 2048), 5)
        assert _gcs_heartbeats(data) == 1  # the bridge spoke first
        cache = runtime.services.state_cache

        def vehicles_heard() -> bool:
            # The UDP and serial vehicles speak until they are heard (as the TCP one does), like a real one.
            router.sendto(_vehicle_frames(51), addr)
            os.write(master, _vehicle_frames(53))
            return all((cache.get(f"mav-{s}") or {}).get("position") for s in (51, 52, 53))

        await eventually(vehicles_heard, timeout=10, interval=0.2, what="the three vehicles' positions")
        for sysid in (51, 52, 53):
            view = cache.get(f"mav-{sysid}") or {}
            assert abs(view["position"]["global"]["latitude"] - (37.4 + sysid / 1e7)) < 1e-9
        serial_out = bytearray()

        def serial_heard() -> bool:
            try:
                serial_out.extend(os.read(master, 4096))
            except BlockingIOError:
                pass
            return _gcs_heartbeats(bytes(serial_out)) >= 1

        await eventually(serial_heard, what="GCS HEARTBEAT on the serial device")
        await eventually(lambda: _gcs_heartbeats(bytes(received_tcp)) >= 1, what="GCS HEARTBEAT over TCP")
        vias = {bridge.vehicles[s].link.name for s in (51, 52, 53)}
        assert vias == {link.label for link in links}
        assert bridge.stats.malformed == 0
    finally:
        await bridge.stop()
        server.close()
        router.close()
        os.close(master)
        os.close(slave)
