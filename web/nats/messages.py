"""The message browser pages and the live tail stream.

``/nats/messages?stream=S`` pages through stored messages (``seq`` or ``time`` to
start, ``dir=prev`` for the page before ``seq``, ``from=end`` for the newest), with a
subject filter; ``/nats/messages/{stream}/{seq}`` shows one message; ``/events/nats-tail``
streams new ones. Callers who see only some organisations see only their subjects.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import PathParameter, QueryParameter
from litestar.response import ServerSentEvent, Template

from core.errors import Invalid
from core.subjects import visibility
from services.nats_console.messages import MAX_PER_SECOND, MessageService
from web.auth.guards import principal_of, requires
from web.nats.params import NAME_PATTERN, Req, StreamPath, SubjectQuery, check_filter
from web.nats.tail import tail_events
from web.sse.live import LiveStreams

StreamQuery = Annotated[str, QueryParameter(pattern=f"^$|{NAME_PATTERN}")]
SeqQuery = Annotated[int, QueryParameter(ge=0, le=2**63 - 1)]
SeqPath = Annotated[int, PathParameter(ge=0, le=2**63 - 1)]
TimeQuery = Annotated[str, QueryParameter(max_length=40)]
DirQuery = Annotated[str, QueryParameter(pattern="^(next|prev)$")]
FromQuery = Annotated[str, QueryParameter(name="from", pattern="^(|start|end)$")]


class MessagesController(Controller):
    """The message browser, a message's page and the live tail."""

    include_in_schema = False
    guards = [requires("read")]

    @get("/nats/messages")
    async def messages(
        self,
        request: Req,
        nats_messages: NamedDependency[MessageService],
        stream: StreamQuery = "",
        subject: SubjectQuery = "",
        seq: SeqQuery = 0,
        time: TimeQuery = "",
        dir: DirQuery = "next",
        origin: FromQuery = "",
    ) -> Template:
        """Pick a stream, then page through its messages."""
        context: dict[str, Any] = {"active": "nats", "tab": "messages", "tail_cap": MAX_PER_SECOND}
        if not stream:
            return Template(
                "pages/nats-messages.html", context={**context, "streams": await nats_messages.streams(), "b": None}
            )
        subject = check_filter(subject) if subject else ">"
        result = await nats_messages.browse(stream, principal_of(request).org_ids, subject, seq, time, dir, origin)
        return Template("pages/nats-messages.html", context={**context, "b": result, "streams": []})

    @get("/nats/messages/{stream:str}/{seq:int}")
    async def message(
        self, request: Req, stream: StreamPath, seq: SeqPath, nats_messages: NamedDependency[MessageService]
    ) -> Template:
        """One message: headers, payload (pretty JSON, text or hex), copy button."""
        row, found = await nats_messages.message(stream, seq, principal_of(request).org_ids)
        return Template(
            "pages/nats-message.html", context={"active": "nats", "tab": "messages", "stream": row, "m": found}
        )

    @get("/events/nats-tail")
    async def tail(
        self,
        request: Req,
        nats_messages: NamedDependency[MessageService],
        live: NamedDependency[LiveStreams],
        stream: StreamQuery = "",
        subject: SubjectQuery = "",
    ) -> ServerSentEvent:
        """New messages on the stream's subjects, at most 20 per second (the rest counted as skipped)."""
        if not stream:
            raise Invalid("stream is required")
        subject = check_filter(subject) if subject else ">"
        row = await nats_messages.stream_row(stream)
        sees = visibility(principal_of(request).org_ids)

        def draw(partial: str, ctx: dict[str, Any]) -> str:
            return live.render(request, partial, ctx)

        return ServerSentEvent(tail_events(nats_messages.tail(row.subjects, subject, sees), draw))
