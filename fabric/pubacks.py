"""JetStream publishes with acknowledgements through one shared reply subscription.

nats-py's ``publish_async`` would do this, but in 2.16 an API error in the reply (for
example "wrong last sequence" on a CAS write) is raised inside its callback instead of
reaching the waiting future, which then hangs. This small publisher parses replies
with msgspec and always settles the future.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

NO_RESPONDERS = "503"
# JetStream's "wrong last sequence" (an expected-last-sequence header did not match): 10071 names
# the sequence; 10164 is the same refusal without it, which a clustered stream's leader sends.
WRONG_LAST_SEQUENCE_CODES = frozenset({10071, 10164})


def wrong_last_sequence(err_code: int | None) -> bool:
    """Whether a JetStream API error code is a compare-and-set conflict (either form)."""
    return err_code in WRONG_LAST_SEQUENCE_CODES


class PublishError(Exception):
    """JetStream refused the message; ``err_code`` is the JetStream API error code."""

    def __init__(self, code: int, err_code: int, description: str) -> None:
        super().__init__(f"{description} (code {code}, err_code {err_code})")
        self.code = code
        self.err_code = err_code
        self.description = description


class _ApiError(msgspec.Struct):
    code: int = 0
    err_code: int = 0
    description: str = ""


class _Reply(msgspec.Struct):
    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: _ApiError | None = None


_decoder = msgspec.json.Decoder(_Reply)


class AckedPublisher:
    """``await publish(subject, data, headers)`` → stream sequence, or ``PublishError``."""

    def __init__(self, nc: NATS, timeout: float = 5.0) -> None:
        self.nc = nc
        self.timeout = timeout
        self._prefix = ""
        self._futures: dict[str, tuple[asyncio.Future[int], float]] = {}
        self._ids = itertools.count()
        self._lock = asyncio.Lock()
        self._reaper: asyncio.Task[None] | None = None

    async def _ensure(self) -> None:
        if self._prefix:
            return
        async with self._lock:
            if not self._prefix:
                prefix = self.nc.new_inbox() + "."
                await self.nc.subscribe(prefix + "*", cb=self._on_reply)
                self._prefix = prefix
                self._reaper = asyncio.create_task(self._reap(), name="puback-reaper")

    async def publish(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> int:
        """Publish and wait for JetStream's acknowledgement; return the stream sequence."""
        return await (await self.submit(subject, data, headers))

    async def submit(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> asyncio.Future[int]:
        """Publish now; return a future of the stream sequence (pipelining many writes).

        There is no per-message timer (``asyncio.wait_for`` costs a task and a timer
        handle per publish); ``_reap`` fails futures that waited longer than ``timeout``.
        """
        await self._ensure()
        token = str(next(self._ids))
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._futures[token] = (fut, time.monotonic())
        try:
            await self.nc.publish(subject, data, reply=self._prefix + token, headers=headers)
        except BaseException:
            self._futures.pop(token, None)
            raise
        return fut

    async def _reap(self) -> None:
        while not self.nc.is_closed:
            await asyncio.sleep(min(1.0, self.timeout / 2))
            cutoff = time.monotonic() - self.timeout
            for token, (fut, started) in list(self._futures.items()):
                if started < cutoff and not fut.done():
                    self._futures.pop(token, None)
                    fut.set_exception(TimeoutError(f"no JetStream ack within {self.timeout:.0f}s"))

    async def _on_reply(self, msg: Msg) -> None:
        found = self._futures.pop(msg.subject[len(self._prefix) :], None)
        fut = found[0] if found else None
        if fut is None or fut.done():
            return
        if msg.headers and msg.headers.get("Status") == NO_RESPONDERS:
            fut.set_exception(PublishError(503, 0, "no stream for subject"))
            return
        try:
            reply = _decoder.decode(msg.data)
        except msgspec.DecodeError as exc:
            fut.set_exception(PublishError(0, 0, f"unreadable ack: {exc}"))
            return
        if reply.error is not None:
            fut.set_exception(PublishError(reply.error.code, reply.error.err_code, reply.error.description))
        else:
            fut.set_result(reply.seq)
