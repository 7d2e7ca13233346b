"""``/events/mux``: several page streams over one connection, each authorised by its own route."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec

from app.runtime import Runtime
from core import topology
from tests.conftest import LiveServer
from tests.helpers import eventually, seed, telemetry
from web.sse.mux import MAX_STREAMS, EventParser, check_target


class Mux:
    """A mux connection read in the background: its decoded messages, in order."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.done = asyncio.Event()

    def of(self, index: int) -> list[dict[str, Any]]:
        """The messages of one stream."""
        return [m for m in self.messages if m["s"] == index]

    def events(self, index: int) -> list[str]:
        """The event names stream ``index`` has delivered."""
        return [m["e"] for m in self.of(index) if "e" in m]


@contextlib.asynccontextmanager
async def mux(url: str, streams: list[str], headers: dict[str, str] | None = None) -> AsyncIterator[Mux]:
    """Open ``/events/mux`` for ``streams`` and collect its messages until the block ends."""
    out = Mux()
    parser = EventParser()

    async def read() -> None:
        async with (
            httpx.AsyncClient(base_url=url, timeout=30) as http,
            http.stream("GET", "/events/mux", params=[("s", s) for s in streams], headers=headers or {}) as resp,
        ):
            assert resp.status_code == 200, resp.status_code
            assert resp.headers["content-type"].startswith("text/event-stream")
            async for chunk in resp.aiter_bytes():
                for name, data in parser.feed(chunk):
                    assert name == "message"  # every carried event is an unnamed, tagged message
                    out.messages.append(msgspec.json.decode(data))
        out.done.set()

    task = asyncio.create_task(read())
    try:
        yield out
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _key(runtime: Runtime, org: str | None = None) -> dict[str, str]:
    created = await runtime.services.apikeys.create("tests", f"mux-{org}", ["read"], org)
    return {"Authorization": f"Bearer {created.key}"}


async def test_streams_share_one_connection_and_each_gets_its_own_updates(
    runtime: Runtime, live_server: LiveServer
) -> None:
    e0, e1 = await seed(runtime, entities=2)
    for entity_id in (e0, e1):
        await runtime.js.publish(topology.telemetry_subject("org1", entity_id), telemetry(battery=80.0))
    await eventually(lambda: runtime.services.state_cache.get(e1), what="state")
    headers = await _key(runtime)
    streams = ["/events/overview", f"/events/entity/{e0}", f"/events/entity/{e1}"]
    async with mux(live_server.url, streams, headers) as m:
        # Every stream opens and resyncs: the nav badge first, then its own regions.
        await eventually(lambda: all(m.of(i) and m.of(i)[0] == {"s": i, "o": 1} for i in range(3)), what="open")
        await eventually(lambda: "entity-cards" in m.events(0), what="overview resync")
        await eventually(lambda: f"entity-telemetry:{e1}" in m.events(2), what="entity resync")
        assert all(m.events(i)[0] == "nav-alerts" for i in range(3))
        assert runtime.hub.client_count == 3  # three real streams behind one connection
        before = len(m.messages)
        await runtime.js.publish(topology.telemetry_subject("org1", e0), telemetry(battery=42.0))
        await eventually(
            lambda: any("42%" in x.get("d", "") for x in m.messages[before:] if x["s"] == 1), what="update"
        )
        await eventually(lambda: any("42%" in x.get("d", "") for x in m.messages[before:] if x["s"] == 0), what="card")
        # The entity stream of e1 carries nothing about e0.
        assert not any(e0 in x.get("e", "") for x in m.messages[before:] if x["s"] == 2)
    await eventually(lambda: runtime.hub.client_count == 0, what="streams cleaned up after the client left")


async def test_each_stream_is_authorised_by_its_own_route(runtime: Runtime, live_server: LiveServer) -> None:
    (own,) = await seed(runtime, "org1", entities=1, prefix="own")
    (other,) = await seed(runtime, "org2", entities=1, prefix="other")
    for org, entity_id in (("org1", own), ("org2", other)):
        await runtime.js.publish(topology.telemetry_subject(org, entity_id), telemetry())
    await eventually(lambda: runtime.services.state_cache.get(own) and runtime.services.state_cache.get(other))
    viewer = await _key(runtime, "org1")
    async with mux(live_server.url, ["/events/overview", f"/events/entity/{other}", "/events/nope"], viewer) as m:
        await eventually(lambda: m.of(1) and m.of(2) and "entity-cards" in m.events(0), what="answers")
        refused = m.of(1)[0]
        assert refused["x"] in (403, 404) and refused["m"], refused
        assert m.of(2)[0]["x"] == 404
        assert len(m.of(1)) == 1 and len(m.of(2)) == 1  # refused streams carry nothing else
        cards = next(x["d"] for x in m.of(0) if x.get("e") == "entity-cards")
        assert own in cards and other not in cards
    # Without credentials the mux opens but every stream that needs sign-in is refused (401).
    async with mux(live_server.url, ["/events/overview"]) as anonymous:
        await eventually(lambda: anonymous.of(0), what="answer")
        assert anonymous.of(0) == [{"s": 0, "x": 401, "m": "sign in required"}]
    await eventually(lambda: runtime.hub.client_count == 0, what="streams cleaned up")


BAD_LISTS: list[tuple[list[str], str]] = [
    ([], "at least one stream"),
    (["/api/v1/organizations"], "not a stream"),
    (["/events/../api/v1/organizations"], "not a stream"),
    (["/events/%2E%2E/api/v1/organizations"], "not a stream"),
    (["http://elsewhere.example/events/overview"], "path on this server"),
    (["//elsewhere.example/events/overview"], "path on this server"),
    (["/events/mux?s=/events/overview"], "cannot carry itself"),
    (["/events/overview#x"], "fragment"),
    (["/events/fleet?q=é"], "percent-encoded"),
    (["/events/" + "a" * 3000], "longer than"),
    (["/events/overview"] * (MAX_STREAMS + 1), f"at most {MAX_STREAMS}"),
]


async def test_bad_stream_lists_get_a_clear_4xx(anon_client: httpx.AsyncClient) -> None:
    for streams, needle in BAD_LISTS:
        response = await anon_client.get("/events/mux", params=[("s", s) for s in streams])
        assert 400 <= response.status_code < 500, (streams, response.status_code)
        assert needle in response.json()["detail"], (streams, response.json())


async def test_the_mux_ends_with_the_server_and_says_how_soon_to_reconnect(
    runtime: Runtime, live_server: LiveServer
) -> None:
    headers = await _key(runtime)
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        params = [("s", "/events/overview"), ("s", "/events/alerts")]
        async with http.stream("GET", "/events/mux", params=params, headers=headers) as resp:
            chunks = resp.aiter_bytes()
            first = await anext(chunks)
            assert b"retry: 2000" in first
            await eventually(lambda: runtime.hub.client_count >= 2, what="streams open")
            runtime.hub.close_all()  # what shutdown does
            rest = b"".join([chunk async for chunk in chunks])  # returns: the response ended
    assert b'{"s":0,"o":1}' in rest and b'{"s":1,"o":1}' in rest
    await eventually(lambda: runtime.hub.client_count == 0, what="streams cleaned up")


def test_parser_follows_the_line_rules_across_chunk_boundaries() -> None:
    parser = EventParser()
    wire = "event: a\r\ndata: one\r\ndata: two\r\n\r\n: comment\r\n\r\ndata: plain\n\nevent: b\rdata: é\r\r\n".encode()
    events: list[tuple[str, str]] = []
    for i in range(len(wire)):  # one byte at a time: CRLF and UTF-8 split everywhere
        events.extend(parser.feed(wire[i : i + 1]))
    assert events == [("a", "one\ntwo"), ("message", "plain"), ("b", "é")]


def test_targets_keep_their_encoding() -> None:
    assert check_target("/events/entity/a%2Db?x=1%202") == ("/events/entity/a-b", "/events/entity/a%2Db", b"x=1%202")
