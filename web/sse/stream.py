"""The SSE generator shared by every live page: resync, then live updates, pings, stop.

It is event-driven (waits on the client's queue), bounded (frames per second capped,
optional ``max_duration``), and always unsubscribes in ``finally``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence

from litestar.response import ServerSentEventMessage

from services.hub import STOP, Client, Hub, Update

PING_INTERVAL = 15.0  # seconds between comment pings on an idle stream
MAX_UPDATES_PER_FRAME = 100  # keys rendered per frame; at 10 frames/s a client gets ≤ 1,000 region updates/s

Renderer = Callable[[Sequence[Update]], Awaitable[list[ServerSentEventMessage]]]


async def event_stream(
    hub: Hub,
    client: Client,
    resync: Callable[[], Awaitable[list[ServerSentEventMessage]]],
    render: Renderer,
    *,
    ping: float = PING_INTERVAL,
    max_fps: float = 10.0,
    max_duration: float | None = None,
    max_updates: int = MAX_UPDATES_PER_FRAME,
) -> AsyncGenerator[ServerSentEventMessage, None]:
    """Yield the resync frames, then rendered updates until the client or server stops."""
    deadline = time.monotonic() + max_duration if max_duration else None
    min_gap = 1.0 / max_fps if max_fps > 0 else 0.0
    try:
        yield ServerSentEventMessage(comment="connected", data=None)
        for message in await resync():
            yield message
        while True:
            timeout = ping
            if deadline is not None:
                timeout = min(timeout, deadline - time.monotonic())
                if timeout <= 0:
                    return
            batch = await client.next_batch(timeout, max_updates)
            if batch is STOP:
                return
            if batch is None:
                if deadline is None or time.monotonic() < deadline:
                    yield ServerSentEventMessage(comment="ping", data=None)
                continue
            assert isinstance(batch, list)
            for message in await render(batch):
                yield message
            if min_gap:
                # Frame budget: updates arriving meanwhile coalesce in the client's queue.
                await asyncio.sleep(min_gap)
    finally:
        hub.unsubscribe(client)
