"""Hostile CoT is refused and counted, dead-lettered with its reason, and the listeners keep working.

Billion laughs, external entities, 10 MB over TCP, invalid XML and protobuf, wrong and
unknown types, impossible points, a full organisation — each over a real socket — and
after all of it a good position report still becomes an entity.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from app.runtime import Runtime
from core import topology
from services.cot.event import CotEvent, to_proto
from services.cot.parse import CotRejected, Ping, StreamSplitter, parse
from tests.app.test_cot_in import atak_pli
from tests.app.test_cot_out import tcp_port, udp_port
from tests.helpers import dlq, eventually
from workers.base import DLQ_REASON
from workers.cot import entity_id_for

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol9 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
]>
<event version="2.0" uid="&lol9;" type="a-f-G" time="2026-01-01T00:00:00Z" start="2026-01-01T00:00:00Z"
 stale="2099-01-01T00:00:00Z" how="m-g"><point lat="1" lon="1" hae="0" ce="1" le="1"/></event>"""
XXE = b"""<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<event version="2.0" uid="x" type="a-f-G" time="2026-01-01T00:00:00Z" start="2026-01-01T00:00:00Z"
 stale="2099-01-01T00:00:00Z"><point lat="1" lon="1"/><detail><remarks>&x;</remarks></detail></event>"""


def event_xml(uid: str, cot_type: str, lat: float = 37.0, lon: float = -122.0) -> bytes:
    return atak_pli(uid, lat, lon, stale=60, cot_type=cot_type)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (BILLION_LAUGHS, "dtd"),
        (XXE, "dtd"),
        (b"<event uid='a' type='a-f-G'><point lat='1' lon='1'", "invalid_xml"),
        (b"\x00\xff garbage \xfe", "invalid_xml"),
        (b"<html><body>hi</body></html>", "not_event"),
        (event_xml("chat-1", "b-t-f"), "unknown_type"),
        (event_xml("zzz-1", "zzz"), "unknown_type"),
        (event_xml("bad-aff", "a-q-G"), "unknown_type"),
        (event_xml("far-1", "a-f-G", lat=123.0), "bad_point"),
        (event_xml("", "a-f-G"), "bad_uid"),
        (b"\xbf\x01\xbf\xff\xff\xff\xff\x0f", "invalid_proto"),
        (b"\xbf\x05ab", "invalid_proto"),
        (b"<event>" + b"x" * 70_000 + b"</event>", "oversized"),
    ],
)
def test_the_parser_refuses_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(CotRejected) as refused:
        parse(data, 65536)
    assert refused.value.reason == reason


def test_the_parser_reads_xml_tak_protocol_and_pings() -> None:
    ev = parse(atak_pli("ANDROID-1", 37.5, -122.5, stale=30), 65536)
    assert not isinstance(ev, Ping)
    assert (ev.uid, ev.type, ev.callsign, ev.battery, ev.course) == ("ANDROID-1", "a-f-G-U-C", "VIPER 1", 87.0, 45.5)
    assert ev.stale - ev.time == pytest.approx(30, abs=0.01)
    original = CotEvent(
        uid="u-1", type="a-h-A-M-F-Q", time=1e9, start=1e9, stale=1e9 + 20, lat=1.5, lon=2.5, callsign="X", remarks="r"
    )
    for stream in (False, True):
        back = parse(to_proto(original, stream), 65536)
        assert isinstance(back, CotEvent)
        assert (back.uid, back.type, back.lat, back.lon, back.callsign, back.remarks) == (
            "u-1",
            "a-h-A-M-F-Q",
            1.5,
            2.5,
            "X",
            "r",
        )
    ping = (
        b'<event version="2.0" uid="takPing" type="t-x-c-t" time="2026-01-01T00:00:00Z"'
        b' start="2026-01-01T00:00:00Z" stale="2026-01-01T00:00:20Z"><point lat="0" lon="0"/></event>'
    )
    assert isinstance(parse(ping, 65536), Ping)


def test_the_stream_splitter_survives_an_oversized_event() -> None:
    splitter = StreamSplitter(max_bytes=1024)
    good = atak_pli("A-1", 1, 1, stale=5)
    items: list[Any] = []
    stream = good + b"<event>" + b"y" * 5000 + b"</event>" + good + bytes(to_proto(_ev(), True))
    for i in range(0, len(stream), 97):  # arbitrary chunk boundaries
        items.extend(splitter.feed(stream[i : i + 97]))
    kinds = ["refused" if isinstance(i, CotRejected) else "event" for i in items]
    assert kinds == ["event", "refused", "event", "event"]
    assert parse(items[3], 1024) == _ev()


def _ev() -> CotEvent:
    return CotEvent(uid="p", type="a-f-G", time=1e9, start=1e9, stale=1e9 + 5, lat=1, lon=1)


def test_entity_ids_for_uids() -> None:
    assert entity_id_for("ANDROID-589520ccfcd20f01") == "ANDROID-589520ccfcd20f01"
    odd = entity_id_for("S-1-5-21.x:y/z")
    assert topology.TOKEN_RE.match(odd) and odd != entity_id_for("S-1-5-21.x:y/w")


@pytest.mark.timeout(60)
async def test_hostile_cot_over_sockets_is_refused_counted_and_the_listeners_keep_working(make_runtime: Any) -> None:
    udp, tcp = udp_port(), tcp_port()
    rt: Runtime = await make_runtime(cot_listen=f"udp://127.0.0.1:{udp},tcp://127.0.0.1:{tcp}", max_entities_per_org=2)
    gateway: Any = next(w for w in rt.workers.workers if w.name == "cot")
    await asyncio.wait_for(gateway.ready.wait(), 10)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for data in (
            BILLION_LAUGHS,
            XXE,
            b"<event uid='a'",
            event_xml("chat-1", "b-t-f"),
            event_xml("zzz-1", "zzz"),
            b"\xbf\x01\xbf\xff\xff\xff\xff\x0f",
        ):
            sock.sendto(data, ("127.0.0.1", udp))
        reader, writer = await asyncio.open_connection("127.0.0.1", tcp)
        # 10 MB in one "event" over TCP, then a good report on the same connection.
        writer.write(b"<event uid='big' type='a-f-G'>" + b"A" * (10 * 1024 * 1024) + b"</event>")
        writer.write(atak_pli("ANDROID-ok-tcp", 37.1, -122.1, stale=60))
        await writer.drain()
        await eventually(lambda: rt.services.state_cache.get("ANDROID-ok-tcp"), timeout=10, what="TCP still works")
        sock.sendto(atak_pli("ANDROID-ok-udp", 37.2, -122.2, stale=60), ("127.0.0.1", udp))
        await eventually(lambda: rt.services.state_cache.get("ANDROID-ok-udp"), timeout=10, what="UDP still works")
        # The organisation holds two entities (OVERWATCH_MAX_ENTITIES_PER_ORG=2): a third sender is refused.
        sock.sendto(atak_pli("ANDROID-third", 37.3, -122.3, stale=60), ("127.0.0.1", udp))
        await eventually(lambda: gateway.counters["refused_org_full"] == 1, timeout=5, what="org full")

        counted = {k: v for k, v in gateway.counters.items() if k.startswith("refused_")}
        assert counted == {
            "refused_dtd": 2,
            "refused_invalid_xml": 1,
            "refused_unknown_type": 2,
            "refused_invalid_proto": 1,
            "refused_oversized": 1,
            "refused_org_full": 1,
        }
        letters = await eventually(lambda: _cot_letters(rt), timeout=5, what="dead letters")
        reasons = sorted((m.headers or {}).get(DLQ_REASON, "").split(":")[0] for m in letters)
        assert reasons == sorted(
            ["dtd", "dtd", "invalid_xml", "unknown_type", "unknown_type", "invalid_proto", "oversized", "org_full"]
        )
        assert all(m.subject == topology.dlq_subject("COT", "tak") for m in letters)
        assert all(len(m.data or b"") <= rt.settings.dlq_max_payload for m in letters)
        assert rt.services.state_cache.get("ANDROID-third") is None
        assert all(not w.stats.restarts for w in rt.workers.workers if w.name == "cot")
        writer.close()
        del reader
    finally:
        sock.close()


async def _cot_letters(rt: Runtime) -> list[Any] | None:
    letters = [m for m in await dlq(rt.js) if m.subject.endswith(".COT")]
    return letters if len(letters) >= 8 else None


@pytest.mark.timeout(60)
async def test_a_connection_flood_is_turned_away_and_the_listener_keeps_serving(make_runtime: Any) -> None:
    from services.cot.transport import MAX_PEERS

    tcp = tcp_port()
    rt: Runtime = await make_runtime(cot_listen=f"tcp://127.0.0.1:{tcp}")
    gateway: Any = next(w for w in rt.workers.workers if w.name == "cot")
    await asyncio.wait_for(gateway.ready.wait(), 10)
    listener = gateway.listeners[0]
    held = [await asyncio.open_connection("127.0.0.1", tcp) for _ in range(MAX_PEERS)]
    try:
        await eventually(lambda: len(listener.peers) == MAX_PEERS, what="every client served")
        reader, writer = await asyncio.open_connection("127.0.0.1", tcp)
        assert await asyncio.wait_for(reader.read(100), 5) == b""  # turned away: closed at once
        writer.close()
        assert listener.refused_peers == 1
        _r, first = held.pop(0)
        first.close()
        await eventually(lambda: len(listener.peers) < MAX_PEERS, what="a slot frees up")
        _r2, late = await asyncio.open_connection("127.0.0.1", tcp)
        late.write(atak_pli("ANDROID-late", 37.3, -122.3, stale=60))
        await late.drain()
        await eventually(lambda: rt.services.state_cache.get("ANDROID-late"), timeout=10, what="served again")
        late.close()
    finally:
        for _reader, w in held:
            w.close()
