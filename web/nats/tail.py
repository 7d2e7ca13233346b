"""Live tail over SSE: the message service's tail rendered as events.

Events: ``nats-tail-row`` (one row, newest first) and ``nats-tail-status`` (rows shown,
messages skipped by the per-client rate cap); comment pings keep a quiet stream open.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable
from typing import Any

from litestar.response import ServerSentEventMessage

from services.nats_console.messages import TailItem, TailPing, TailStatus
from services.nats_console.render import view

RETRY_MS = 2000


async def tail_events(
    items: AsyncGenerator[TailItem, None], render: Callable[[str, dict[str, Any]], str]
) -> AsyncGenerator[ServerSentEventMessage, None]:
    """Yield tail rows and status until the client leaves or the server stops."""
    async with contextlib.aclosing(items):
        yield ServerSentEventMessage(comment="connected", retry=RETRY_MS, data=None)
        async for item in items:
            if isinstance(item, TailPing):
                yield ServerSentEventMessage(comment="ping", data=None)
            elif isinstance(item, TailStatus):
                data = render("nats-tail-status", {"shown": item.shown, "skipped": item.skipped, "cap": item.cap})
                yield ServerSentEventMessage(event="nats-tail-status", data=data)
            else:
                yield ServerSentEventMessage(event="nats-tail-row", data=render("nats-tail-row", {"m": view(item)}))
