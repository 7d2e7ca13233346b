"""Small helpers shared by the tests (polling, seeding, reading streams)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg

from app.runtime import Runtime
from core import topology
from core.contracts.registry import Position
from services.schemas import EntityCreate, OrgCreate


async def eventually(
    check: Callable[[], Awaitable[Any]] | Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "condition",
    retry_on: tuple[type[BaseException], ...] = (),
) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds.

    The one place the suite waits: a condition with a deadline, never a fixed time. Exceptions of the
    ``retry_on`` types count as "not yet" (the last one is named in the failure).
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
        except retry_on as exc:
            last = exc
        else:
            last = result
            if result:
                return result
        if time.monotonic() >= deadline:
            cause = last if isinstance(last, BaseException) else None
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})") from cause
        await asyncio.sleep(interval)


async def connect_once(url: str, **options: Any) -> NATS:
    """One NATS connection attempt without reconnects; a failed attempt's client is closed.

    nats-py leaves the socket of an attempt that failed during its handshake (a refusal, a connect
    timeout on a busy machine) open when reconnecting is off; garbage collection then reports it in
    whichever test happens to be running.
    """
    client = NATS()
    try:
        await client.connect(url, allow_reconnect=False, max_reconnect_attempts=0, **options)
    except BaseException:
        # Bounded: after a failed TLS handshake nats-py's close waits for a transport that never opened.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.close(), 2)
        raise
    return client


async def synced(nc: NATS) -> None:
    """Return once the server has processed everything ``nc`` sent so far (new SUBs included).

    nats-py 2.16 writes a flush's PING straight to the socket, ahead of the commands still
    buffered for its flusher task, so a single ``flush()`` after ``subscribe()`` can return
    before the server has the SUB: a message another connection publishes right after is not
    delivered (measured: about one try in ten on this box). The first flush yields to the
    flusher, which writes the buffer before the PONG is read; the second PING follows it.
    """
    await nc.flush()
    await nc.flush()


def wait_until(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05, what: str = "condition") -> Any:
    """``eventually`` for synchronous tests (subprocesses, sockets): poll ``check`` until truthy or the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {result!r})")
        time.sleep(interval)


class ManualClock:
    """A ``core.clock.Clock`` that moves only when told (``advance``): time-driven code without sleeping.

    It starts at the real wall-clock time so what it stamps sits next to what other code stamps.
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._monotonic = 1_000.0

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        """Move both clocks on by ``seconds``."""
        assert seconds >= 0, "a clock does not go backwards"
        self._now += seconds
        self._monotonic += seconds


async def seed(
    runtime: Runtime,
    org_id: str = "org1",
    entities: int = 2,
    prefix: str = "ent",
    entity_type: str = "aircraft_multirotor",
) -> list[str]:
    """Create an organisation and ``entities`` entities through the registry service."""
    registry = runtime.services.registry
    await registry.create_org(OrgCreate(org_id=org_id, name=f"Org {org_id}", org_type="military"))
    ids = []
    for i in range(entities):
        rec = await registry.create_entity(
            org_id,
            EntityCreate(
                entity_id=f"{prefix}-{i}",
                name=f"{prefix} {i}",
                entity_type=entity_type,  # type: ignore[arg-type]
                position=Position(latitude=37.0, longitude=-122.0),
            ),
        )
        ids.append(rec.entity_id)
    return ids


def telemetry(lat: float = 37.0, lon: float = -122.0, battery: float = 80.0, **extra: Any) -> bytes:
    """A valid ontology telemetry payload."""
    body: dict[str, Any] = {
        "position": {"global": {"latitude": lat, "longitude": lon, "altitude_msl": 100.0}},
        "power": {"battery_remaining": battery, "voltage": 16.1},
        "vfr": {"groundspeed": 9.5, "heading": 90.0},
    }
    body.update(extra)
    return msgspec.json.encode(body)


async def stream_messages(js: JetStreamContext, stream: str) -> list[RawStreamMsg]:
    """Every message currently stored in ``stream`` (direct get by sequence)."""
    info = await js.stream_info(stream)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            out.append(await js.get_msg(stream, seq))
        except Exception:  # noqa: BLE001 - deleted or purged sequence
            continue
    return out


async def dlq(js: JetStreamContext) -> list[RawStreamMsg]:
    """Messages in the dead-letter stream."""
    return await stream_messages(js, topology.STREAM_DLQ)


async def state(runtime: Runtime, entity_id: str) -> dict[str, Any] | None:
    """The stored EntityState (not the cache)."""
    try:
        entry = await runtime.kv_state.get(entity_id)
    except Exception:  # noqa: BLE001 - missing key
        return None
    value = msgspec.json.decode(entry.value or b"{}")
    return value if isinstance(value, dict) else None
