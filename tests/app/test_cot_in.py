"""CoT in: a PyTAK client's position reports become an entity on the map that moves and goes stale.

Real sockets on 127.0.0.1: PyTAK clients send ATAK-style position reports over UDP and
TCP to the gateway's listeners; the map's SSE stream (over real HTTP) shows the result.
"""

from __future__ import annotations

import asyncio
import json
import time
from configparser import ConfigParser
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytak
import pytest

from app.runtime import Runtime
from core import topology
from core.errors import NotFound
from tests.app.test_cot_out import tcp_port, udp_port
from tests.conftest import LiveServer
from tests.helpers import eventually, seed, telemetry


def cot_time(offset: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def atak_pli(
    uid: str, lat: float, lon: float, stale: float, cot_type: str = "a-f-G-U-C", callsign: str = "VIPER 1"
) -> bytes:
    """A position report as ATAK sends it (takv, contact endpoint, group, status, track)."""
    now = cot_time()
    return (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><event version="2.0" uid="{uid}" type="{cot_type}"'
        f' time="{now}" start="{now}" stale="{cot_time(stale)}" how="m-g"><point lat="{lat}" lon="{lon}"'
        ' hae="31.2" ce="9.9" le="9999999.0"/><detail><takv os="34" version="5.2.0.11" device="SAMSUNG SM-T575"'
        f' platform="ATAK-CIV"/><contact endpoint="*:-1:stcp" callsign="{callsign}"/><uid Droid="{callsign}"/>'
        '<precisionlocation altsrc="GPS" geopointsrc="GPS"/><__group role="Team Member" name="Cyan"/>'
        '<status battery="87"/><track course="45.5" speed="1.2"/></detail></event>'
    ).encode()


async def pytak_writer(url: str) -> Any:
    parser = ConfigParser(interpolation=None)
    parser["DEFAULT"] = {"COT_URL": url}
    _reader, writer = await pytak.protocol_factory(parser["DEFAULT"])
    return writer


class MapStream:
    """The map page's SSE stream over real HTTP: every marker JSON with the time it arrived."""

    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key
        self.markers: list[tuple[float, dict[str, Any]]] = []
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}", "Accept": "text/event-stream"}
        async with (
            httpx.AsyncClient(timeout=60) as http,
            http.stream("GET", self.url + "/events/map", headers=headers) as r,
        ):
            event = ""
            async for line in r.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event in ("map-reset", "map-entity"):
                    data = json.loads(line[5:])
                    for marker in data if isinstance(data, list) else [data]:
                        self.markers.append((time.monotonic(), marker))

    def find(self, entity_id: str, since: float, **want: Any) -> tuple[float, dict[str, Any]] | None:
        for at, m in self.markers:
            if at >= since and m["id"] == entity_id and all(m.get(k) == v for k, v in want.items()):
                return at, m
        return None


@pytest.mark.timeout(60)
async def test_a_pytak_position_report_is_on_the_map_follows_moves_and_goes_stale(make_runtime: Any) -> None:
    udp, tcp = udp_port(), tcp_port()
    rt: Runtime = await make_runtime(cot_listen=f"udp://127.0.0.1:{udp},tcp://127.0.0.1:{tcp}", offline_after=30.0)
    gateway: Any = next(w for w in rt.workers.workers if w.name == "cot")
    await asyncio.wait_for(gateway.ready.wait(), 10)
    server = LiveServer(rt)
    await server.start()
    key = (await rt.services.apikeys.create("tests", "map-reader", ["read"], None)).key
    stream = MapStream(server.url, key)
    stream.task = asyncio.create_task(stream.run())
    udp_writer = await pytak_writer(f"udp+wo://127.0.0.1:{udp}")
    tcp_writer = await pytak_writer(f"tcp://127.0.0.1:{tcp}")
    try:
        await eventually(lambda: stream.markers or rt.hub.client_count, what="map stream open")
        # 1. ATAK's position report over UDP: a new entity of organisation "tak", on the map within 2 s.
        sent = time.monotonic()
        await udp_writer.send(atak_pli("ANDROID-3f2a9c", 37.4301, -122.1702, stale=4.0))
        at, marker = await eventually(
            lambda: stream.find("ANDROID-3f2a9c", sent, live=True), timeout=5, what="the ATAK user on the map"
        )
        assert at - sent <= 2.0, f"on the map after {at - sent:.2f}s"
        assert marker["name"] == "VIPER 1" and marker["affiliation"] == "friend"
        assert marker["lat"] == pytest.approx(37.4301) and marker["lon"] == pytest.approx(-122.1702)
        assert marker["sidc"] == "SFGPUC---------"  # its own CoT type a-f-G-U-C drives the symbol
        record = await rt.services.registry.get_entity("tak", "ANDROID-3f2a9c")
        assert record.entity_type == "operator_station" and record.metadata["cot_type"] == "a-f-G-U-C"

        # 2. It moves (now over TCP): the marker follows within 2 s.
        sent = time.monotonic()
        tcp_writer.write(atak_pli("ANDROID-3f2a9c", 37.4350, -122.1650, stale=4.0))
        await tcp_writer.drain()
        at, marker = await eventually(
            lambda: stream.find("ANDROID-3f2a9c", sent, lat=37.435), timeout=5, what="the marker moved"
        )
        assert at - sent <= 2.0 and marker["lon"] == pytest.approx(-122.165)
        last_report = sent

        # 3. A hostile marker dropped on a tablet: its own entity, hostile symbol.
        tcp_writer.write(atak_pli("marker-h1", 37.44, -122.18, stale=60, cot_type="a-h-G-E-V-A", callsign="T-72"))
        await tcp_writer.drain()
        _at, hostile = await eventually(lambda: stream.find("marker-h1", 0), timeout=5, what="hostile marker")
        assert hostile["affiliation"] == "hostile" and hostile["sidc"].startswith("SHGPEVA")

        # 4. Silence: offline once its stale time (4 s) has passed — not after OVERWATCH_OFFLINE_AFTER (30 s).
        at, _m = await eventually(
            lambda: stream.find("ANDROID-3f2a9c", last_report, live=False), timeout=10, what="stale → offline"
        )
        assert 3.0 <= at - last_report <= 7.0, f"offline {at - last_report:.1f}s after the last report"
        assert (stream.find("marker-h1", last_report) or (0, {}))[1].get("live", True)  # its stale is 60 s
        assert gateway.counters["applied"] == 3
    finally:
        udp_writer.close()
        tcp_writer.close()
        if stream.task:
            stream.task.cancel()
            await asyncio.gather(stream.task, return_exceptions=True)
        await server.stop()


@pytest.mark.timeout(30)
async def test_a_tak_server_link_brings_its_clients_in_unless_write_only(make_runtime: Any) -> None:
    """COT_URL tcp:// is read-write like PyTAK's: what the TAK server relays comes in; tcp+wo:// ignores it."""
    relayed = atak_pli("ANDROID-relay", 37.45, -122.15, stale=60, callsign="RELAY")
    ignored = atak_pli("ANDROID-wo", 37.46, -122.16, stale=60, callsign="WO")
    writers: list[asyncio.StreamWriter] = []

    async def tak_server(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes, hang_up: bool = False
    ) -> None:
        writers.append(writer)
        writer.write(data)  # another client's position report, relayed to us
        await writer.drain()
        if hang_up:
            writer.close()  # the gateway reads up to this end before it notices the hang-up and reconnects
            return
        while await reader.read(65536):
            pass

    rw = await asyncio.start_server(lambda r, w: tak_server(r, w, relayed), "127.0.0.1", 0)
    wo = await asyncio.start_server(lambda r, w: tak_server(r, w, ignored, hang_up=True), "127.0.0.1", 0)
    rw_port, wo_port = rw.sockets[0].getsockname()[1], wo.sockets[0].getsockname()[1]
    rt: Runtime = await make_runtime(cot_url=f"tcp://127.0.0.1:{rw_port},tcp+wo://127.0.0.1:{wo_port}")
    try:
        await eventually(lambda: rt.services.state_cache.get("ANDROID-relay"), timeout=10, what="relayed sender")
        assert (await rt.services.registry.get_entity("tak", "ANDROID-relay")).name == "RELAY"
        gateway: Any = next(w for w in rt.workers.workers if w.name == "cot")
        wo_link = next(link for link in gateway.links if "+wo" in link.target.scheme)
        # The write-only link has read what its server sent, up to the hang-up (an event read on a link that
        # is not write-only is applied, registry included, before the next read): nothing of it came in.
        await eventually(lambda: wo_link.stats.errors >= 1, what="the write-only link read to the hang-up")
        with pytest.raises(NotFound):
            await rt.services.registry.get_entity("tak", "ANDROID-wo")
        assert rt.services.state_cache.get("ANDROID-wo") is None
    finally:
        for writer in writers:
            writer.close()
        rw.close()
        wo.close()


@pytest.mark.timeout(30)
async def test_a_multicast_mesh_both_ways_without_echo(make_runtime: Any) -> None:
    """ATAK's default mesh: the gateway sends to and listens on one multicast group; tablets on the group
    see the fleet, the gateway hears the tablets, and its own events heard back are dropped as loops."""
    port = udp_port()
    group = f"udp://239.2.3.1:{port}"
    tablet = await pytak_writer(f"udp+wo://239.2.3.1:{port}")
    parser = ConfigParser(interpolation=None)
    parser["DEFAULT"] = {"COT_URL": group}
    try:
        listener, listener_writer = await pytak.protocol_factory(parser["DEFAULT"])  # a tablet on the group
    except OSError as exc:
        tablet.close()
        pytest.skip(f"no multicast on this host: {exc}")
    rt: Runtime = await make_runtime(cot_url=group, cot_listen=group)
    heard: list[bytes] = []

    async def hear() -> None:
        while True:
            data, _addr = await listener.recv()
            heard.append(data)

    task = asyncio.create_task(hear())
    try:
        await seed(rt, org_id="fleet", entities=1)
        await rt.js.publish(topology.telemetry_subject("fleet", "ent-0"), telemetry())
        await eventually(lambda: any(b'uid="ent-0"' in d for d in heard), timeout=10, what="tablet sees the fleet")
        await tablet.send(atak_pli("ANDROID-mesh", 37.41, -122.11, stale=60))
        await eventually(lambda: rt.services.state_cache.get("ANDROID-mesh"), timeout=10, what="gateway hears tablet")
        gateway: Any = next(w for w in rt.workers.workers if w.name == "cot")
        await eventually(lambda: gateway.counters["loop"] >= 1, timeout=5, what="own events dropped")
        assert rt.services.state_cache.get("ent-0")["org_id"] == "fleet"  # not re-registered in "tak"
        assert (await rt.services.registry.list_entities("tak", 10, 0)).total == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        tablet.close()
        listener.close()
        listener_writer.close()


def test_the_offline_deadline_honours_a_reports_stale_time() -> None:
    from workers.telemetry import offline_deadline

    seen = "2026-01-01T00:00:00Z"
    base = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    assert offline_deadline({"last_seen": seen}, 10.0) == base + 10  # OVERWATCH_OFFLINE_AFTER
    assert offline_deadline({"last_seen": seen, "extras": {"stale": "2026-01-01T00:00:04Z"}}, 10.0) == base + 4
    assert offline_deadline({"last_seen": seen, "extras": {"stale": "2026-01-01T00:05:00Z"}}, 10.0) == base + 300
    # A stale time older than the last report belongs to an earlier report: the timeout applies.
    assert offline_deadline({"last_seen": seen, "extras": {"stale": "2025-12-31T23:59:00Z"}}, 10.0) == base + 10
    assert offline_deadline({"last_seen": seen, "extras": {"stale": "soon"}}, 10.0) == base + 10
    assert offline_deadline({}, 10.0) is None
