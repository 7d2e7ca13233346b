"""``/events/mux``: many page streams over one connection, shared by every tab of a browser.

Browsers open at most six HTTP/1.1 connections per host and every console page holds a
live stream, so a seventh tab never loaded. The tabs of one browser share a SharedWorker
(``static/js/live-worker.js``) that holds ONE EventSource here naming every stream its
tabs want: ``/events/mux?s=/events/overview&s=/events/entity/cam-1``. Each named stream
runs through the application exactly as if the browser had asked for it (routing, the
``authenticate`` guard, route guards, per-organisation filtering, the same generator), as
an in-process ASGI request carrying the caller's own headers. Its events come back as
unnamed messages tagged with the stream's index in ``s``:

* ``{"s": 0, "e": "entity-card:cam-1", "d": "<article …>"}``: event ``e`` of stream 0;
* ``{"s": 1, "o": 1}``: stream 1 answered 200 and is open;
* ``{"s": 2, "x": 403, "m": "no access to organization org2"}``: stream 2 was refused.

A refused stream is reported and the others go on; when a stream ends (server shutdown)
the whole response ends, and the browser reconnects and every stream resyncs, as a single
stream would. Streams are held back by a bounded queue when the browser reads slowly (they
coalesce in their hub queues as they always do) and are cancelled when the mux ends.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import re
from collections.abc import AsyncGenerator
from typing import Annotated, Any, cast
from urllib.parse import unquote, urlsplit

import anyio
import msgspec
from litestar import Controller, Request, get
from litestar.params import QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage
from litestar.types import ASGIApp, Scope

from core.errors import Invalid
from web.sse.live import RETRY_MS
from web.sse.stream import PING_INTERVAL

log = logging.getLogger(__name__)

Req = Request[Any, Any, Any]

MAX_STREAMS = 64  # streams per connection (a browser with more tabs than this gets a clear error for the rest)
MAX_URL = 2048  # characters in one stream URL
QUEUE = 256  # events in flight from the streams to the browser; a full queue holds the streams back
DETAIL_BYTES = 1024  # how much of a refused stream's body is kept for its error message
STOP_TIMEOUT = 5.0  # seconds to wait for the streams to clean up after the connection ends
STREAM_PREFIXES = ("/events/", "/embed/events/")
SELF = "/events/mux"
# Headers of the mux request that are not the streams' own (the body, the EventSource's
# reconnect cursor); everything else (cookies, API keys, user agent) is passed on.
DROPPED_HEADERS = frozenset({b"accept", b"last-event-id", b"content-length", b"content-type", b"transfer-encoding"})
_LINES = re.compile(r"\r\n|\r|\n")

StreamsQuery = Annotated[
    list[str] | None, QueryParameter(description="stream URLs, e.g. /events/overview (repeatable)")
]


class _End:
    """Queued when a stream that was open has ended: the whole response ends."""


END = _End()


def check_target(url: str) -> tuple[str, str, bytes]:
    """Validate one stream URL; return ``(path, raw path, query string)`` for its ASGI scope.

    Only this server's own streams (``/events/…``, ``/embed/events/…``) can be named, as
    relative, percent-encoded URLs without dot segments; never the mux itself.
    """
    if not url:
        raise Invalid("empty stream URL")
    if len(url) > MAX_URL:
        raise Invalid(f"stream URL longer than {MAX_URL} characters")
    if not url.isascii() or not url.isprintable() or " " in url:
        raise Invalid(f"stream URL {url[:80]!r} must be percent-encoded ASCII")
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or parts.fragment or not url.startswith("/"):
        raise Invalid(f"stream URL {url[:80]!r} must be a path on this server, without a fragment")
    path = unquote(parts.path)
    segments = parts.path.split("/") + path.split("/")
    if any(s in (".", "..") for s in segments) or not path.startswith(STREAM_PREFIXES):
        raise Invalid(f"{url[:80]!r} is not a stream: stream URLs start with /events/ or /embed/events/")
    if path == SELF or path.startswith(SELF + "/"):
        raise Invalid("the mux cannot carry itself")
    return path, parts.path, parts.query.encode("ascii")


class EventParser:
    """Incremental ``text/event-stream`` parser (the line rules of the HTML standard)."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._tail = ""
        self._event = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[tuple[str, str]]:
        """Return the ``(event name, data)`` of every event completed by ``chunk``."""
        text = self._tail + self._decoder.decode(chunk)
        held = ""
        if text.endswith("\r"):
            # A CR at the end may be the first half of CRLF: decide with the next chunk.
            text, held = text[:-1], "\r"
        lines = _LINES.split(text)
        self._tail = lines.pop() + held
        out: list[tuple[str, str]] = []
        for line in lines:
            if not line:
                if self._data:
                    out.append((self._event or "message", "\n".join(self._data)))
                self._event, self._data = "", []
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "event":
                    self._event = value
                elif name == "data":
                    self._data.append(value)
        return out


def _tagged(body: dict[str, Any]) -> ServerSentEventMessage:
    return ServerSentEventMessage(data=msgspec.json.encode(body).decode())


def _detail(status: int, body: bytes) -> str:
    try:
        decoded = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return f"HTTP {status}"
    detail = decoded.get("detail") if isinstance(decoded, dict) else None
    return str(detail)[:300] if detail else f"HTTP {status}"


def stream_scope(request: Req, path: str, raw_path: str, query: bytes) -> dict[str, Any]:
    """A fresh ASGI scope for one stream: the mux request's connection and headers, another target."""
    outer = request.scope
    headers = [(k, v) for k, v in outer.get("headers", []) if k.lower() not in DROPPED_HEADERS]
    headers.append((b"accept", b"text/event-stream"))
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": outer.get("asgi", {"version": "3.0"}),
        "http_version": outer.get("http_version", "1.1"),
        "method": "GET",
        "scheme": outer.get("scheme", "http"),
        "path": path,
        "raw_path": raw_path.encode("ascii"),
        "root_path": outer.get("root_path", ""),
        "query_string": query,
        "headers": headers,
        "client": outer.get("client"),
        "server": outer.get("server"),
        "state": {},
        "extensions": {},
    }
    return scope


async def run_stream(
    app: ASGIApp,
    scope: dict[str, Any],
    index: int,
    queue: asyncio.Queue[ServerSentEventMessage | _End],
    gone: asyncio.Event,
) -> None:
    """Serve one stream in-process and queue its events tagged with ``index``."""
    parser = EventParser()
    state = {"status": 0, "open": False, "requested": False}
    refused = bytearray()
    finished = asyncio.Event()

    async def receive() -> Any:
        if not state["requested"]:
            state["requested"] = True
            return {"type": "http.request", "body": b"", "more_body": False}
        # Like a server: the client is gone when the mux ends or once the response is complete.
        waits = [asyncio.ensure_future(gone.wait()), asyncio.ensure_future(finished.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            state["status"] = int(message["status"])
            kind = dict(message.get("headers") or []).get(b"content-type", b"")
            if state["status"] == 200 and kind.startswith(b"text/event-stream"):
                state["open"] = True
                await queue.put(_tagged({"s": index, "o": 1}))
        elif message["type"] == "http.response.body":
            body = bytes(message.get("body", b""))
            if not message.get("more_body", False):
                finished.set()
            if state["open"]:
                for name, data in parser.feed(body):
                    await queue.put(_tagged({"s": index, "e": name, "d": data}))
            elif len(refused) < DETAIL_BYTES:
                refused.extend(body[: DETAIL_BYTES - len(refused)])

    try:
        await app(cast("Scope", scope), receive, send)
    except Exception:
        log.exception("stream %s failed inside the mux", scope["path"])
        state["status"] = state["status"] if state["open"] else 500
    if gone.is_set():
        return
    if state["open"]:
        await queue.put(END)
    else:
        status = int(state["status"]) or 500
        if status == 200:
            status, message = 502, "not an event stream"
        else:
            message = _detail(status, bytes(refused))
        await queue.put(_tagged({"s": index, "x": status, "m": message}))


async def mux_events(
    request: Req, targets: list[tuple[str, str, bytes]], ping: float = PING_INTERVAL
) -> AsyncGenerator[ServerSentEventMessage, None]:
    """Run every target stream and yield their tagged events until one ends or the client leaves."""
    app: ASGIApp = request.app
    queue: asyncio.Queue[ServerSentEventMessage | _End] = asyncio.Queue(QUEUE)
    gone = asyncio.Event()
    tasks = [
        asyncio.create_task(run_stream(app, stream_scope(request, *target), index, queue, gone))
        for index, target in enumerate(targets)
    ]
    try:
        yield ServerSentEventMessage(comment="mux", retry=RETRY_MS, data=None)
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), ping)
            except TimeoutError:
                yield ServerSentEventMessage(comment="ping", data=None)
                continue
            if isinstance(item, _End):
                return
            yield item
    finally:
        gone.set()
        for task in tasks:
            task.cancel()
        # Shielded: the connection's own cancellation must not cut the streams' clean-up short.
        with anyio.CancelScope(shield=True):
            await asyncio.wait(tasks, timeout=STOP_TIMEOUT)


class MuxController(Controller):
    """``GET /events/mux``."""

    include_in_schema = False
    opt = {"public": True}  # every carried stream is authorised by its own route

    @get("/events/mux")
    async def mux(self, request: Req, s: StreamsQuery = None) -> ServerSentEvent:
        """Several page streams over one connection (see the module docstring for the framing)."""
        urls = s or []
        if not urls:
            raise Invalid("name at least one stream: /events/mux?s=/events/overview")
        if len(urls) > MAX_STREAMS:
            raise Invalid(f"at most {MAX_STREAMS} streams per connection, got {len(urls)}")
        targets = [check_target(url) for url in urls]
        return ServerSentEvent(mux_events(request, targets), headers={"Cache-Control": "no-store"})
