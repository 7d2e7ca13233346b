"""Stored messages of a stream: pages by sequence or time, one message, and the live tail.

Reads go through ``fabric.messages`` (stream "get message" requests, never a consumer).
Callers who see only some organisations see only their subjects. The tail is a plain
core NATS subscription per connected page on the stream's own subjects; at most
``MAX_PER_SECOND`` messages reach a client, the rest are counted as skipped, so a busy
stream never floods a browser.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable
from datetime import UTC, datetime

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from core.errors import Invalid, NotFound
from core.subjects import visibility
from fabric.api import ApiError
from fabric.messages import MessageError, Page, StoredMsg, page_backward, page_forward
from services.hub import Hub
from services.nats_console.render import MessageView, view
from services.nats_console.streams import StreamRow, StreamService, api_failure

MAX_PER_SECOND = 20  # tail rows per client per second; the excess is counted as skipped
TAIL_QUEUE = MAX_PER_SECOND * 2
STATUS_EVERY = 1.0  # seconds between tail status updates while counts change
PING_EVERY = 15.0  # seconds between keep-alives on a quiet tail


class Browse(msgspec.Struct, frozen=True):
    """What the browser shows for one request."""

    stream: StreamRow
    subject: str
    messages: list[MessageView]
    page: Page
    start_seq: int
    at_time: str


class TailStatus(msgspec.Struct, frozen=True):
    """The tail's counters: rows sent and messages skipped by the rate cap."""

    shown: int
    skipped: int
    cap: int = MAX_PER_SECOND


class TailPing(msgspec.Struct, frozen=True):
    """Nothing to send for ``PING_EVERY`` seconds: a keep-alive is due."""


TailItem = StoredMsg | TailStatus | TailPing


def parse_when(text: str) -> datetime:
    """An ISO 8601 time (a ``datetime-local`` value is taken as UTC) or ``Invalid``."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(f"invalid time {text!r}: use ISO 8601, e.g. 2025-01-31T12:00:00Z") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


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


class MessageService:
    """Pages through a stream's stored messages and follows new ones."""

    def __init__(self, nc: NATS, hub: Hub, streams: StreamService) -> None:
        self.nc = nc
        self.hub = hub  # closes every tail at shutdown
        self.stream_service = streams

    async def streams(self) -> list[StreamRow]:
        """Every stream, for the picker."""
        try:
            return await self.stream_service.streams()
        except ApiError as exc:
            raise api_failure(exc, "streams") from None

    async def stream_row(self, name: str) -> StreamRow:
        """One stream's row (``NotFound`` when there is no such stream)."""
        try:
            return await self.stream_service.row(name)
        except ApiError as exc:
            raise api_failure(exc, f"stream {name}") from None

    async def browse(
        self,
        name: str,
        org_ids: frozenset[str] | None,
        subject: str = ">",
        seq: int = 0,
        at: str = "",
        direction: str = "next",
        origin: str = "",
    ) -> Browse:
        """Resolve where to start (sequence, time, start or end) and read one page."""
        row = await self.stream_row(name)
        reader = self.stream_service.reader(row)
        sees = visibility(org_ids)
        bounds = (row.first_seq, row.last_seq)
        try:
            if at:
                seq, direction = await reader.seq_at_time(parse_when(at), subject, row.last_seq), "next"
            if origin == "end" or (direction == "prev" and not seq):
                page = await page_backward(reader, row.last_seq + 1, bounds, subject, sees)
            elif direction == "prev":
                page = await page_backward(reader, seq, bounds, subject, sees)
            else:
                page = await page_forward(reader, seq or row.first_seq, bounds, subject, sees)
        except MessageError as exc:
            raise Invalid(f"stream {row.name}: {exc}") from None
        return Browse(row, subject, [view(m, limit=1024) for m in page.messages], page, seq, at)

    async def message(self, name: str, seq: int, org_ids: frozenset[str] | None) -> tuple[StreamRow, MessageView]:
        """One stored message the caller may see (``NotFound`` otherwise)."""
        row = await self.stream_row(name)
        try:
            found = await self.stream_service.reader(row).get({"seq": seq}) if seq > 0 else None
        except MessageError as exc:
            raise Invalid(f"stream {name}: {exc}") from None
        if found is None or not visibility(org_ids)(found.subject):
            raise NotFound(f"message {seq} not found in stream {name}")
        return row, view(found)

    async def tail(
        self, subjects: list[str], subject_filter: str, sees: Callable[[str], bool]
    ) -> AsyncGenerator[TailItem, None]:
        """Status first, then new messages (rate-capped), status changes and pings until shutdown."""
        queue: asyncio.Queue[Msg] = asyncio.Queue(TAIL_QUEUE)
        counts = {"shown": 0, "skipped": 0}
        bucket = Bucket(MAX_PER_SECOND)

        async def on_message(msg: Msg) -> None:
            if not sees(msg.subject) or not subject_matches(subject_filter, msg.subject):
                return
            if bucket.take() and not queue.full():
                queue.put_nowait(msg)
            else:
                counts["skipped"] += 1

        stop = self.hub.subscribe(lambda _u: False)  # closed by the hub at shutdown
        subs = [await self.nc.subscribe(s, cb=on_message) for s in subjects]
        try:
            yield TailStatus(counts["shown"], counts["skipped"])
            reported, last_status, last_ping = dict(counts), time.monotonic(), time.monotonic()
            while not stop.closed:
                try:
                    msg: Msg | None = await asyncio.wait_for(queue.get(), STATUS_EVERY)
                except TimeoutError:
                    msg = None
                if msg is not None:
                    counts["shown"] += 1
                    yield StoredMsg(0, msg.subject, datetime.now(UTC), msg.data or b"", dict(msg.headers or {}))
                now = time.monotonic()
                if counts != reported and now - last_status >= STATUS_EVERY:
                    reported, last_status = dict(counts), now
                    yield TailStatus(counts["shown"], counts["skipped"])
                if now - last_ping >= PING_EVERY:
                    last_ping = now
                    yield TailPing()
        finally:
            self.hub.unsubscribe(stop)
            for sub in subs:
                try:
                    await sub.unsubscribe()
                except Exception:  # noqa: BLE001 - the connection may already be closed at shutdown
                    pass
