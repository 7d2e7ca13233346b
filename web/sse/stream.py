"""The SSE generator shared by every live page: resync, then live updates, pings, stop.

It is event-driven (waits on the client's queue), bounded (frames per second capped,
optional ``max_duration``), and always unsubscribes in ``finally``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence

from litestar.response import ServerSentEventMessage

from services.hub import STOP, Client, Hub, Update

PING_INTERVAL = 15.0  # seconds between comment pings on an idle stream
MAX_UPDATES_PER_FRAME = 100  # keys rendered per frame; at 10 frames/s a client gets ≤ 1,000 region updates/s

Renderer = Callable[[Sequence[Update]], Awaitable[list[ServerSentEventMessage]]]
_BREAK = re.compile(r"\r\n|\r|\n")  # the line breaks an SSE field may not contain


def encode_event(message: ServerSentEventMessage) -> str:
    """One event in the wire format Litestar writes (comment, id, event, data lines, retry, blank line)."""
    sep = message.sep
    parts: list[str] = []
    if message.comment is not None:
        parts.extend(f": {chunk}{sep}" for chunk in _BREAK.split(str(message.comment)))
    if message.id is not None:
        parts.append(f"id: {_BREAK.sub('', str(message.id))}{sep}")
    if message.event is not None:
        parts.append(f"event: {_BREAK.sub('', message.event)}{sep}")
    if message.data is not None:
        data = message.data
        text = data.decode() if isinstance(data, bytes) else str(data)
        # CRLF, CR and LF each end a line (as ``_BREAK`` splits): str methods rather than a regex,
        # since a rendered region has dozens of lines and every live update encodes several.
        lines = text.replace("\r\n", "\n").replace("\r", "\n")
        parts.append(f"data: {lines.replace(chr(10), sep + 'data: ')}{sep}")
    if message.retry is not None:
        parts.append(f"retry: {message.retry}{sep}")
    parts.append(sep)
    return "".join(parts)


class Frame(ServerSentEventMessage):
    """Several events written as one chunk: one ASGI send per frame instead of one per region.

    Litestar's SSE response asks each item for ``encode()``; a frame answers with its events
    already encoded, so a browser (or the ``/events`` multiplexer) reads exactly the same bytes.
    """

    def __init__(self, messages: Sequence[ServerSentEventMessage]) -> None:
        super().__init__(data=None)
        self.raw = "".join(encode_event(m) for m in messages).encode()

    def encode(self) -> bytes:
        """The frame's events, encoded."""
        return self.raw


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
        yield ServerSentEventMessage(comment="connected", data=None)  # before the resync: headers go out now
        yield Frame(await resync())
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
            messages = await render(batch)
            if messages:
                yield Frame(messages)
            if min_gap:
                # Frame budget: updates arriving meanwhile coalesce in the client's queue.
                await asyncio.sleep(min_gap)
    finally:
        hub.unsubscribe(client)
