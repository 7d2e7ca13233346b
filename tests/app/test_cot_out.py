"""CoT out: PyTAK receivers (UDP and TCP) get every live demo entity within 2 s of its KV update.

Real sockets on 127.0.0.1: two PyTAK UDP receivers (CoT XML and TAK protocol v1 mesh),
a TCP server that the gateway connects to (TAK protocol v1 stream framing), and a PyTAK
TCP client connected to the gateway's own TCP listener (CoT XML, as ATAK would be).
"""

from __future__ import annotations

import asyncio
import socket
import time
from configparser import ConfigParser
from typing import Any

import pytak
import pytest
import takproto
from lxml import etree

from app.demo import DEMO_FLEET, seed_demo, start_demo_fleet
from app.runtime import Runtime
from fabric.state_store import StateStore
from services.cot.types import cot_type
from services.hub import Update
from tests.helpers import eventually
from workers.simulator import FaultConfig

Received = list[tuple[float, dict[str, Any]]]


def udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pytak_config(url: str) -> Any:
    parser = ConfigParser(interpolation=None)
    parser["DEFAULT"] = {"COT_URL": url}
    return parser["DEFAULT"]


def from_xml(data: bytes) -> dict[str, Any]:
    root = etree.fromstring(data)
    assert root.tag == "event"
    point, contact = root.find("point"), root.find("detail/contact")
    return {
        "uid": root.get("uid"),
        "type": root.get("type"),
        "time": root.get("time"),
        "stale": root.get("stale"),
        "lat": float(point.get("lat")),
        "lon": float(point.get("lon")),
        "callsign": contact.get("callsign") if contact is not None else None,
        "video": (root.find("detail/__video").get("url") if root.find("detail/__video") is not None else None),
    }


def from_proto(data: bytes) -> dict[str, Any]:
    msg = takproto.parse_proto(bytearray(data))
    assert msg is not None and msg != -1
    cot = msg.cotEvent
    return {
        "uid": cot.uid,
        "type": cot.type,
        "time": cot.sendTime / 1000,
        "stale": cot.staleTime / 1000,
        "lat": cot.lat,
        "lon": cot.lon,
        "callsign": cot.detail.contact.callsign,
    }


async def udp_receiver(port: int, decode: Any, into: Received) -> None:
    reader, writer = await pytak.protocol_factory(pytak_config(f"udp://127.0.0.1:{port}"))
    try:
        while True:
            data, _addr = await reader.recv()
            into.append((time.monotonic(), decode(data)))
    finally:
        reader.close()
        writer.close()


async def pytak_tcp_client(port: int, into: Received) -> None:
    reader, writer = await pytak.protocol_factory(pytak_config(f"tcp://127.0.0.1:{port}"))
    try:
        while True:
            data = await reader.readuntil(b"</event>")
            into.append((time.monotonic(), from_xml(data)))
    finally:
        writer.close()


async def stream_server(port: int, into: Received) -> asyncio.Server:
    """A TAK-server stand-in on TCP reading TAK protocol v1 stream frames."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await read_frames(reader)
        finally:
            writer.close()

    async def read_frames(reader: asyncio.StreamReader) -> None:
        buf = b""
        while chunk := await reader.read(65536):
            buf += chunk
            while len(buf) > 2 and buf[0] == 0xBF:
                length, shift, pos = 0, 0, 1
                while pos < len(buf):
                    byte = buf[pos]
                    pos += 1
                    length |= (byte & 0x7F) << shift
                    shift += 7
                    if not byte & 0x80:
                        break
                if len(buf) < pos + length:
                    break
                into.append((time.monotonic(), from_proto(buf[: pos + length])))
                buf = buf[pos + length :]

    return await asyncio.start_server(serve, "127.0.0.1", port)


@pytest.mark.timeout(60)
async def test_every_live_demo_entity_reaches_pytak_receivers_within_two_seconds(make_runtime: Any) -> None:
    xml_udp, proto_udp, proto_tcp, listen = udp_port(), udp_port(), tcp_port(), tcp_port()
    got_xml: Received = []
    got_mesh: Received = []
    got_stream: Received = []
    got_pytak_tcp: Received = []
    server = await stream_server(proto_tcp, got_stream)
    tasks = [
        asyncio.create_task(udp_receiver(xml_udp, from_xml, got_xml)),
        asyncio.create_task(udp_receiver(proto_udp, from_proto, got_mesh)),
    ]
    rt: Runtime = await make_runtime(
        cot_url=(
            f"udp://127.0.0.1:{xml_udp},udp+wo://127.0.0.1:{proto_udp}?tak_proto=1,tcp://127.0.0.1:{proto_tcp}?tak_proto=1"
        ),
        cot_listen=f"tcp://127.0.0.1:{listen}",
        cot_video_base_url="http://overwatch.local:8080",
        offline_after=10.0,
    )
    try:
        kv_updates: list[tuple[float, str, dict[str, Any]]] = []

        def on_update(update: Update) -> None:
            view = rt.services.state_cache.get(update.key)
            if update.topic == "state" and view and view.get("is_live"):
                kv_updates.append((time.monotonic(), update.key, view))

        rt.hub.add_listener(on_update)
        gateway: Any = next(w for w in rt.workers.workers if w.name == "cot")
        await asyncio.wait_for(gateway.ready.wait(), 10)
        await seed_demo(rt)
        start_demo_fleet(rt, FaultConfig())
        tasks.append(asyncio.create_task(pytak_tcp_client(listen, got_pytak_tcp)))
        ids = {eid: (name, kind) for eid, name, kind in DEMO_FLEET}
        cache = rt.services.state_cache
        await eventually(lambda: all((cache.get(e) or {}).get("is_live") for e in ids), what="demo fleet live")
        window_start = time.monotonic()
        window_end = window_start + 2.0  # every KV update in the first two seconds, checked over the next two
        # Four seconds of traffic: closed once every receiver has had an event after them (each one's events
        # arrive in order, so all of the window's events have arrived by then).
        await eventually(
            lambda: all(
                any(t > window_start + 4.0 for t, _ev in received)
                for received in (got_xml, got_mesh, got_stream, got_pytak_tcp)
            ),
            timeout=15,
            what="every receiver past the four-second window",
        )

        for name, received in (("xml/udp", got_xml), ("mesh/udp", got_mesh), ("stream/tcp", got_stream)):
            for at, entity_id, _view in kv_updates:
                if not window_start <= at <= window_end:
                    continue
                hit = [t for t, ev in received if ev["uid"] == entity_id and at < t <= at + 2.0]
                assert hit, f"{name}: no event for {entity_id} within 2 s of its KV update"
        assert {ev["uid"] for _t, ev in got_pytak_tcp} >= set(ids), "the PyTAK TCP client misses entities"

        for received in (got_xml, got_mesh, got_stream, got_pytak_tcp):
            last = {ev["uid"]: ev for _t, ev in received}
            for entity_id, (name, kind) in ids.items():
                ev = last[entity_id]
                view = cache.get(entity_id) or {}
                pos = view["position"]["global"]
                assert ev["type"] == cot_type(kind, "friend")
                assert ev["callsign"] == name
                assert abs(ev["lat"] - pos["latitude"]) < 0.01 and abs(ev["lon"] - pos["longitude"]) < 0.01
                sent, stale = ev["time"], ev["stale"]
                if isinstance(sent, str):
                    sent, stale = (_epoch(sent), _epoch(stale))
                assert stale - sent == pytest.approx(10.0, abs=0.01), "stale = the offline timeout"
        camera = {ev["uid"]: ev for _t, ev in got_xml}["demo-cam-1"]
        assert camera["video"] == "http://overwatch.local:8080/video/demo-cam-1.mjpg"

        # The rate cap: the simulator writes each entity ~4 times a second, the gateway sends ≤ 1 Hz.
        per_entity = [t for t, ev in got_xml if ev["uid"] == "demo-uav-1" and window_start <= t <= window_start + 4]
        assert 2 <= len(per_entity) <= 5, per_entity

        # A tracked object with a ground position becomes its own marker, affiliated by its threat.
        store = StateStore(rt.kv_state, "detection")

        def plant(doc: dict[str, Any]) -> bool:
            doc["detections"] = {
                "objects": {
                    "trk-7": {
                        "track_id": "trk-7",
                        "label": "person",
                        "confidence": 0.91,
                        "threat_level": "HIGH_THREAT",
                        "is_active": True,
                        "last_seen": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "position": {"latitude": 37.4281, "longitude": -122.1702},
                    }
                }
            }
            return True

        await store.merge("demo-cam-1", plant, create=False)
        marker = await eventually(
            lambda: next((ev for _t, ev in got_xml if ev["uid"] == "demo-cam-1.trk-7"), None), timeout=3
        )
        assert marker["type"] == "a-h-G"
        assert marker["lat"] == pytest.approx(37.4281) and marker["lon"] == pytest.approx(-122.1702)
        assert all(link.stats.connected for link in gateway.links)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        server.close()
        await server.wait_closed()


def _epoch(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
