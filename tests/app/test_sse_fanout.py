"""200 concurrent SSE clients get updates; a client that stops reading delays nobody."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.runtime import Runtime
from core import topology
from tests.conftest import LiveServer
from tests.helpers import eventually, seed, telemetry

pytestmark = pytest.mark.slow
CLIENTS = 200


async def _open(url: str, key: str, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port), limit=1 << 20)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n"
        f"Authorization: Bearer {key}\r\n\r\n".encode()
    )
    await writer.drain()
    return reader, writer


async def _wait_for(reader: asyncio.StreamReader, needle: bytes, timeout: float) -> float:
    buffer = b""
    deadline = time.monotonic() + timeout
    while needle not in buffer:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(needle)
        buffer = buffer[-4096:] + await asyncio.wait_for(reader.read(65536), remaining)
    return time.monotonic()


async def _applied(rt: Runtime) -> bool:
    """The telemetry consumer has processed and acknowledged everything in its stream."""
    info = await rt.js.consumer_info(topology.STREAM_TELEMETRY, topology.CONSUMER_TELEMETRY)
    return info.num_pending == 0 and info.num_ack_pending == 0


async def test_many_clients_and_a_slow_one(runtime: Runtime, live_server: LiveServer, admin_key: str) -> None:
    (e0,) = await seed(runtime, entities=1)
    await runtime.js.publish(topology.telemetry_subject("org1", e0), telemetry(battery=50.0))
    await eventually(lambda: runtime.services.state_cache.get(e0), what="state")
    # The slow client: opens the entity page stream and never reads; its socket buffers fill up.
    slow_reader, slow_writer = await _open(live_server.url, admin_key, f"/events/entity/{e0}")
    clients = await asyncio.gather(*(_open(live_server.url, admin_key, "/events/overview") for _ in range(CLIENTS)))
    try:
        await asyncio.gather(*(_wait_for(r, b"event: entity-cards", 20) for r, _ in clients))
        assert runtime.hub.client_count >= CLIENTS + 1
        # Flood updates so the slow client's socket and queue are saturated, then measure a marker update.
        for i in range(300):
            await runtime.nc.publish(topology.telemetry_subject("org1", e0), telemetry(battery=float(i % 90)))  # type: ignore[union-attr]
        await runtime.nc.flush()  # type: ignore[union-attr]
        await eventually(lambda: _applied(runtime), what="the flood applied to the state")
        started = time.monotonic()
        await runtime.js.publish(topology.telemetry_subject("org1", e0), telemetry(battery=97.0))
        arrived = await asyncio.gather(*(_wait_for(r, b"97%", 15) for r, _ in clients))
        worst = max(arrived) - started
        assert worst < 5.0, f"slowest of {CLIENTS} clients took {worst:.2f}s"
    finally:
        for _, writer in clients:
            writer.close()
        slow_writer.close()
    await eventually(lambda: runtime.hub.client_count == 0, timeout=10, what="streams cleaned up")
