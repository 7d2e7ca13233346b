"""The message browser: read stored messages by sequence or time without any consumer.

Reads use the stream "get message" API (``$JS.API.DIRECT.GET`` when the stream allows
direct gets, ``$JS.API.STREAM.MSG.GET`` otherwise) with ``seq`` + ``next_by_subj`` for
paging and ``start_time`` for "from a time", so browsing never creates a consumer and
works on work-queue and interest streams alike. A page costs one request per message
shown (plus skipped ones for filtered callers), whatever the stream's size.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.errors import TimeoutError as NatsTimeout

PAGE_SIZE = 25
MAX_SCAN = 500  # messages read per page at most (callers who see only some organisations skip others')
PREVIEW_CHARS = 160  # payload characters in the list
DETAIL_BYTES = 64 * 1024  # payload bytes shown on the detail page; the rest is cut with a note
REQUEST_TIMEOUT = 5.0


class MessageError(Exception):
    """The server refused a read (other than "no such message")."""


class StoredMsg(msgspec.Struct, frozen=True):
    """One stored message as read from the stream."""

    seq: int
    subject: str
    time: datetime | None
    data: bytes
    headers: dict[str, str]


class Page(msgspec.Struct, frozen=True):
    """One page of messages (ascending sequence) and where the next/previous pages start."""

    messages: list[StoredMsg]
    newer_from: int | None  # first sequence of the next page (None: at the end)
    older_before: int | None  # the previous page ends before this sequence (None: at the start)
    scanned: int
    truncated_scan: bool  # MAX_SCAN reached before the page filled


def parse_server_time(text: str) -> datetime | None:
    """A timestamp as the NATS server sends it (UTC, nanoseconds cut to microseconds); None if empty or unreadable."""
    if not text:
        return None
    text = text.replace("Z", "")
    if "." in text:
        head, frac = text.split(".", 1)
        text = f"{head}.{frac[:6]}"
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    except ValueError:
        return None


def _parse_header_block(raw: bytes) -> dict[str, str]:
    lines = raw.decode("utf-8", "replace").split("\r\n")[1:]  # first line is "NATS/1.0"
    out: dict[str, str] = {}
    for line in lines:
        if ":" in line:
            key, value = line.split(":", 1)
            out[key.strip()] = value.strip()
    return out


_DIRECT_META = (
    "Nats-Stream",
    "Nats-Subject",
    "Nats-Sequence",
    "Nats-Time-Stamp",
    "Nats-Num-Pending",
    "Nats-Last-Sequence",
)


class Reader:
    """Gets single messages from one stream (direct or through the API)."""

    def __init__(self, nc: NATS, stream: str, direct: bool, api_prefix: str = "$JS.API") -> None:
        self.nc = nc
        self.stream = stream
        self.direct = direct
        self.prefix = api_prefix
        self.requests = 0

    async def get(self, request: dict[str, Any]) -> StoredMsg | None:
        """The message the request names, or ``None`` when there is none."""
        self.requests += 1
        payload = json.dumps(request).encode()
        kind = "DIRECT.GET" if self.direct else "STREAM.MSG.GET"
        try:
            msg = await self.nc.request(f"{self.prefix}.{kind}.{self.stream}", payload, timeout=REQUEST_TIMEOUT)
        except NatsTimeout:
            raise MessageError(f"stream {self.stream} did not answer within {REQUEST_TIMEOUT:.0f} s") from None
        if self.direct:
            headers = dict(msg.headers or {})
            status = headers.get("Status")
            if status == "404":
                return None
            if status:
                raise MessageError(headers.get("Description") or f"status {status}")
            seq = int(headers.get("Nats-Sequence", "0"))
            user = {k: v for k, v in headers.items() if k not in _DIRECT_META}
            return StoredMsg(
                seq,
                headers.get("Nats-Subject", ""),
                parse_server_time(headers.get("Nats-Time-Stamp", "")),
                msg.data or b"",
                user,
            )
        body = json.loads(msg.data or b"{}")
        if "error" in body:
            if body["error"].get("code") == 404:
                return None
            raise MessageError(body["error"].get("description") or "message get failed")
        m = body["message"]
        hdrs = _parse_header_block(base64.b64decode(m["hdrs"])) if m.get("hdrs") else {}
        data = base64.b64decode(m["data"]) if m.get("data") else b""
        return StoredMsg(int(m["seq"]), m["subject"], parse_server_time(m.get("time", "")), data, hdrs)

    async def at_or_after(self, seq: int, subject: str) -> StoredMsg | None:
        """The first message with sequence ≥ ``seq`` whose subject matches ``subject`` (wildcards ok)."""
        return await self.get({"seq": max(1, seq), "next_by_subj": subject})

    async def seq_at_time(self, when: datetime, subject: str, last_seq: int) -> int:
        """The first sequence stored at or after ``when`` (``last_seq + 1`` when none is)."""
        stamp = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        found = await self.get({"start_time": stamp, "next_by_subj": subject})
        # A start time after the last message makes the server answer with the first one.
        if found is None or (found.time is not None and found.time < when):
            return last_seq + 1
        return found.seq


def _older(out: list[StoredMsg], first_seq: int) -> int | None:
    return out[0].seq if out and out[0].seq > first_seq else None


async def page_forward(
    reader: Reader,
    start: int,
    bounds: tuple[int, int],
    subject: str,
    visible: Callable[[str], bool],
    size: int = PAGE_SIZE,
) -> Page:
    """Up to ``size`` visible messages from sequence ``start`` on (``bounds`` = first, last seq)."""
    first_seq, last_seq = bounds
    out: list[StoredMsg] = []
    seq, scanned = max(1, start, first_seq), 0
    while len(out) < size and scanned < MAX_SCAN and seq <= last_seq:
        msg = await reader.at_or_after(seq, subject)
        if msg is None:
            seq = last_seq + 1
            break
        scanned += 1
        if visible(msg.subject):
            out.append(msg)
        seq = msg.seq + 1
    newer = seq if seq <= last_seq else None
    return Page(
        out, newer, _older(out, first_seq) or (start if start > first_seq else None), scanned, scanned >= MAX_SCAN
    )


async def page_backward(
    reader: Reader,
    before: int,
    bounds: tuple[int, int],
    subject: str,
    visible: Callable[[str], bool],
    size: int = PAGE_SIZE,
) -> Page:
    """Up to ``size`` visible messages just before sequence ``before``.

    There is no "previous by subject" request, so this reads forward through windows
    that grow backwards (``size``, then ×4 each time) until the page is full or the
    stream's first sequence is reached.
    """
    first_seq, last_seq = bounds
    before = min(before, last_seq + 1)
    out: list[StoredMsg] = []
    hi, window, scanned = before, size, 0
    while hi > first_seq and len(out) < size and scanned < MAX_SCAN:
        lo = max(first_seq, hi - window)
        chunk: list[StoredMsg] = []
        seq = lo
        while scanned < MAX_SCAN:
            msg = await reader.at_or_after(seq, subject)
            if msg is None or msg.seq >= hi:
                break
            scanned += 1
            if visible(msg.subject):
                chunk.append(msg)
            seq = msg.seq + 1
        out = chunk + out
        hi, window = lo, window * 4
    out = out[-size:]
    newer = before if before <= last_seq else None
    return Page(out, newer, _older(out, first_seq), scanned, scanned >= MAX_SCAN)
