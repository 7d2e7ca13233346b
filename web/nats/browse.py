"""The message browser pages and the live tail stream.

``/nats/messages?stream=S`` pages through stored messages (``seq`` or ``time`` to
start, ``dir=prev`` for the page before ``seq``, ``from=end`` for the newest), with a
subject filter; ``/nats/messages/{stream}/{seq}`` shows one message; ``/events/nats-tail``
streams new ones. Callers who see only some organisations see only their subjects.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import PathParameter, QueryParameter
from litestar.response import ServerSentEvent, Template

from app.runtime import Runtime
from core.errors import Invalid, NotFound
from core.subjects import visibility
from fabric.api import ApiError
from fabric.messages import MessageError, Page, page_backward, page_forward
from services.nats_console.render import MessageView, view
from services.nats_console.streams import NatsConsole, StreamRow, console_for
from web.auth.guards import principal_of, requires
from web.nats.pages import NAME_PATTERN, StreamPath, SubjectQuery, api_failure, check_filter
from web.nats.tail import MAX_PER_SECOND, tail_events
from web.sse.live import render

Req = Request[Any, Any, Any]
StreamQuery = Annotated[str, QueryParameter(pattern=f"^$|{NAME_PATTERN}")]
SeqQuery = Annotated[int, QueryParameter(ge=0, le=2**63 - 1)]
SeqPath = Annotated[int, PathParameter(ge=0, le=2**63 - 1)]
TimeQuery = Annotated[str, QueryParameter(max_length=40)]
DirQuery = Annotated[str, QueryParameter(pattern="^(next|prev)$")]
FromQuery = Annotated[str, QueryParameter(name="from", pattern="^(|start|end)$")]


class Browse(msgspec.Struct, frozen=True):
    """What the browser shows for one request."""

    stream: StreamRow
    subject: str
    messages: list[MessageView]
    page: Page
    start_seq: int
    at_time: str


def parse_when(text: str) -> datetime:
    """An ISO 8601 time (a ``datetime-local`` value is taken as UTC) or ``Invalid``."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(f"invalid time {text!r}: use ISO 8601, e.g. 2025-01-31T12:00:00Z") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


async def _stream_row(console: NatsConsole, name: str) -> StreamRow:
    try:
        return console._row(await console.info(name))
    except ApiError as exc:
        raise api_failure(exc, f"stream {name}") from None


async def browse(
    console: NatsConsole,
    row: StreamRow,
    org_ids: frozenset[str] | None,
    subject: str = ">",
    seq: int = 0,
    at: str = "",
    direction: str = "next",
    origin: str = "",
) -> Browse:
    """Resolve where to start (sequence, time, start or end) and read one page."""
    reader = console.reader(row)
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


class MessagesController(Controller):
    """The message browser, a message's page and the live tail."""

    include_in_schema = False
    guards = [requires("read")]

    @get("/nats/messages")
    async def messages(
        self,
        request: Req,
        runtime: NamedDependency[Runtime],
        stream: StreamQuery = "",
        subject: SubjectQuery = "",
        seq: SeqQuery = 0,
        time: TimeQuery = "",
        dir: DirQuery = "next",
        origin: FromQuery = "",
    ) -> Template:
        """Pick a stream, then page through its messages."""
        console = console_for(runtime)
        context: dict[str, Any] = {"active": "nats", "tab": "messages", "tail_cap": MAX_PER_SECOND}
        if not stream:
            try:
                context["streams"] = await console.streams()
            except ApiError as exc:
                raise api_failure(exc, "streams") from None
            return Template("pages/nats-messages.html", context={**context, "b": None})
        subject = check_filter(subject) if subject else ">"
        row = await _stream_row(console, stream)
        result = await browse(console, row, principal_of(request).org_ids, subject, seq, time, dir, origin)
        return Template("pages/nats-messages.html", context={**context, "b": result, "streams": []})

    @get("/nats/messages/{stream:str}/{seq:int}")
    async def message(
        self, request: Req, stream: StreamPath, seq: SeqPath, runtime: NamedDependency[Runtime]
    ) -> Template:
        """One message: headers, payload (pretty JSON, text or hex), copy button."""
        console = console_for(runtime)
        row = await _stream_row(console, stream)
        try:
            found = await console.reader(row).get({"seq": seq}) if seq > 0 else None
        except MessageError as exc:
            raise Invalid(f"stream {stream}: {exc}") from None
        if found is None or not visibility(principal_of(request).org_ids)(found.subject):
            raise NotFound(f"message {seq} not found in stream {stream}")
        return Template(
            "pages/nats-message.html", context={"active": "nats", "tab": "messages", "stream": row, "m": view(found)}
        )

    @get("/events/nats-tail")
    async def tail(
        self, request: Req, runtime: NamedDependency[Runtime], stream: StreamQuery = "", subject: SubjectQuery = ""
    ) -> ServerSentEvent:
        """New messages on the stream's subjects, at most 20 per second (the rest counted as skipped)."""
        if not stream:
            raise Invalid("stream is required")
        subject = check_filter(subject) if subject else ">"
        row = await _stream_row(console_for(runtime), stream)
        sees = visibility(principal_of(request).org_ids)

        def draw(partial: str, ctx: dict[str, Any]) -> str:
            return render(runtime, request, partial, ctx)

        return ServerSentEvent(tail_events(runtime, draw, row.subjects, subject, sees))
