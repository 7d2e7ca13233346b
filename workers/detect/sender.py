"""Reliable, ordered event delivery: a bounded buffer drained by one task, acked one by one.

An event leaves the buffer only when JetStream acknowledged it. While NATS is
unreachable events wait (oldest dropped when the buffer is full, and counted); on
reconnect they go out in order. A publish whose ack was lost is simply sent again —
its ``Nats-Msg-Id`` makes the stream drop the copy.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from nats.js import JetStreamContext

from workers.detect.events import Outgoing

log = logging.getLogger("overwatch.detect.sender")


class EventSender:
    """Buffers events and publishes them to JetStream in order."""

    def __init__(
        self,
        js: JetStreamContext,
        capacity: int = 2000,
        timeout: float = 2.0,
        on_drop: Callable[[Outgoing], None] | None = None,
    ) -> None:
        self.js = js
        self.capacity = capacity
        self.timeout = timeout
        self.on_drop = on_drop
        self.buffer: deque[Outgoing] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.published = 0
        self.failed = 0
        self.dropped = 0

    def submit(self, event: Outgoing) -> None:
        """Queue an event (never blocks; the oldest is dropped when full)."""
        self.buffer.append(event)
        if len(self.buffer) > self.capacity:
            lost = self.buffer.popleft()
            self.dropped += 1
            log.warning("event buffer full (%d): dropped %s", self.capacity, lost.msg_id)
            if self.on_drop is not None:
                self.on_drop(lost)
        self._idle.clear()
        self._wake.set()

    @property
    def pending(self) -> int:
        """Events not yet acknowledged."""
        return len(self.buffer)

    async def run(self, stopping: asyncio.Event) -> None:
        """Deliver until ``stopping`` is set (then whatever :meth:`flush` is given time for)."""
        backoff = 0.1
        while not stopping.is_set():
            if not self.buffer:
                self._idle.set()
                self._wake.clear()
                waiter = asyncio.ensure_future(self._wake.wait())
                stopper = asyncio.ensure_future(stopping.wait())
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                continue
            if await self._send_one():
                backoff = 0.1
            else:
                try:
                    await asyncio.wait_for(stopping.wait(), backoff)
                except TimeoutError:
                    pass
                backoff = min(backoff * 2, 2.0)

    async def _send_one(self) -> bool:
        event = self.buffer[0]
        try:
            await self.js.publish(event.subject, event.payload, timeout=self.timeout, headers=event.headers)
        except Exception as exc:  # noqa: BLE001 - any failure means "not acked": keep it and retry
            self.failed += 1
            if self.failed in (1, 10) or self.failed % 100 == 0:
                log.warning("event %s not acknowledged (%s: %s); will retry", event.msg_id, type(exc).__name__, exc)
            return False
        if self.buffer and self.buffer[0] is event:
            self.buffer.popleft()
        self.published += 1
        return True

    async def flush(self, timeout: float) -> bool:
        """Send everything still buffered, for at most ``timeout`` seconds; True when empty."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.buffer and asyncio.get_running_loop().time() < deadline:
            if not await self._send_one():
                await asyncio.sleep(0.1)
        return not self.buffer
