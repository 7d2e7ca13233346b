"""A lean pull-consumer loop for high-rate workers.

nats-py's ``PullSubscription.fetch`` waits for each message with its own timer task,
which dominates the cost per message at telemetry rates. ``PullConsumer`` keeps one
pull request outstanding, collects delivered messages in a list from the
subscription callback, and hands out whatever has arrived. Messages are ordinary
nats-py ``Msg`` objects (``ack``/``nak``/``term``/``metadata`` work as usual).
"""

from __future__ import annotations

import asyncio
import time

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

# Status codes JetStream sends on a pull request's inbox (not data messages).
STATUS_HEARTBEAT = "100"
REQUEST_DONE = {"404", "408", "409"}  # no messages / request expired / limits (e.g. max ack pending)


class PullConsumer:
    """Streams messages of a durable pull consumer in batches."""

    def __init__(self, nc: NATS, stream: str, durable: str, batch: int = 1000, expires: float = 5.0) -> None:
        self.nc = nc
        self.api = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self.batch = batch
        self.expires = expires
        self._inbox = nc.new_inbox()
        self._sub: Subscription | None = None
        self._buffer: list[Msg] = []
        self._arrived = asyncio.Event()
        self._outstanding = 0  # messages the open request may still deliver
        self._request_at = 0.0
        self._last_status = ""

    @property
    def last_status(self) -> str:
        """The status code that ended the last pull request (``409``: consumer gone or at a limit; ``503``: no
        responders); empty while one is open."""
        return self._last_status

    async def start(self) -> None:
        """Subscribe to the delivery inbox."""
        self._sub = await self.nc.subscribe(self._inbox, cb=self._on_msg, pending_msgs_limit=4 * self.batch + 100)

    async def stop(self) -> None:
        """Unsubscribe (undelivered messages are redelivered by JetStream later)."""
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

    async def _on_msg(self, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        if status is not None and not msg.data:
            if status != STATUS_HEARTBEAT:
                self._outstanding = 0  # the request is finished; the next fetch asks again
                self._last_status = status
                self._arrived.set()
            return
        self._buffer.append(msg)
        self._outstanding -= 1
        self._arrived.set()

    async def _request(self) -> None:
        self._outstanding = self.batch
        self._request_at = time.monotonic()
        body = msgspec.json.encode({"batch": self.batch, "expires": int(self.expires * 1e9)})
        await self.nc.publish(self.api, body, reply=self._inbox)

    async def fetch(self, timeout: float, linger: float = 0.002) -> list[Msg]:
        """Return delivered messages, waiting up to ``timeout`` for the first one.

        After the first message arrives it lingers ``linger`` seconds so a burst comes
        back as one batch. Returns ``[]`` on timeout.
        """
        if self._outstanding <= 0 or time.monotonic() - self._request_at > self.expires:
            if self._last_status == "409":
                await asyncio.sleep(0.01)  # consumer at a limit (max ack pending): do not spin
            self._last_status = ""
            await self._request()
        if not self._buffer:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout)
            except TimeoutError:
                return []
            if not self._buffer:
                return []
            if linger and len(self._buffer) < self.batch and self._outstanding > 0:
                await asyncio.sleep(linger)
        out, self._buffer = self._buffer, []
        return out
