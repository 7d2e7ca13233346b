"""Live tail: new messages on a stream's subjects, over SSE, with a per-client rate cap.

A plain core NATS subscription (no consumer, no JetStream state) per connected page on
the stream's own subjects. At most ``MAX_PER_SECOND`` rows reach a client; the rest are
counted as "skipped" and reported in the status region, so a busy stream never floods
a browser. Events: ``nats-tail-row`` (one row, newest first) and ``nats-tail-status``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from litestar.response import ServerSentEventMessage
from nats.aio.msg import Msg

from fabric.messages import StoredMsg
from services.nats_console.render import view

if TYPE_CHECKING:
    from app.runtime import Runtime

MAX_PER_SECOND = 20  # rows per client per second; the excess is counted as skipped
QUEUE = MAX_PER_SECOND * 2
STATUS_EVERY = 1.0  # seconds between status updates while counts change
PING_EVERY = 15.0
RETRY_MS = 2000


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcard match: ``*`` is one token, a final ``>`` one or more."""
    pat, sub = pattern.split("."), subject.split(".")
    for i, token in enumerate(pat):
        if token == ">":
            return len(sub) > i
        if i >= len(sub) or (token != "*" and token != sub[i]):
            return False
    return len(pat) == len(sub)


class Bucket:
    """A token bucket: ``rate`` tokens per second, at most ``rate`` saved up."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.at = time.monotonic()

    def take(self) -> bool:
        """Spend one token if there is one."""
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


async def tail_events(
    runtime: Runtime,
    render: Callable[[str, dict[str, Any]], str],
    subjects: list[str],
    subject_filter: str,
    sees: Callable[[str], bool],
) -> AsyncGenerator[ServerSentEventMessage, None]:
    """Yield tail rows and status until the client leaves or the server stops."""
    nc = runtime.nc
    assert nc is not None
    queue: asyncio.Queue[Msg] = asyncio.Queue(QUEUE)
    counts = {"shown": 0, "skipped": 0}
    bucket = Bucket(MAX_PER_SECOND)

    async def on_message(msg: Msg) -> None:
        if not sees(msg.subject) or not subject_matches(subject_filter, msg.subject):
            return
        if bucket.take() and not queue.full():
            queue.put_nowait(msg)
        else:
            counts["skipped"] += 1

    stop = runtime.hub.subscribe(lambda _u: False)  # closed by the hub at shutdown
    subs = [await nc.subscribe(s, cb=on_message) for s in subjects]

    def status() -> ServerSentEventMessage:
        data = render(
            "nats-tail-status", {"shown": counts["shown"], "skipped": counts["skipped"], "cap": MAX_PER_SECOND}
        )
        return ServerSentEventMessage(event="nats-tail-status", data=data)

    try:
        yield ServerSentEventMessage(comment="connected", retry=RETRY_MS, data=None)
        yield status()
        reported, last_status, last_ping = dict(counts), time.monotonic(), time.monotonic()
        while not stop.closed:
            try:
                msg = await asyncio.wait_for(queue.get(), STATUS_EVERY)
            except TimeoutError:
                msg = None
            if msg is not None:
                counts["shown"] += 1
                stored = StoredMsg(0, msg.subject, datetime.now(UTC), msg.data or b"", dict(msg.headers or {}))
                yield ServerSentEventMessage(event="nats-tail-row", data=render("nats-tail-row", {"m": view(stored)}))
            now = time.monotonic()
            if counts != reported and now - last_status >= STATUS_EVERY:
                reported, last_status = dict(counts), now
                yield status()
            if now - last_ping >= PING_EVERY:
                last_ping = now
                yield ServerSentEventMessage(comment="ping", data=None)
    finally:
        runtime.hub.unsubscribe(stop)
        for sub in subs:
            try:
                await sub.unsubscribe()
            except Exception:  # noqa: BLE001 - the connection may already be closed at shutdown
                pass
