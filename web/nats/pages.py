"""NATS console pages: streams (with purge), consumers and the server view.

Everyone signed in may read; purging is for admins over every organisation (a purge
touches every organisation's messages), is previewed first (dry run with the count),
then confirmed, and is audited. Callers who see only some organisations get subject
trees limited to their organisations' subjects.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import PathParameter, QueryParameter
from litestar.response import Redirect, Template

from app.runtime import Runtime
from core.errors import Invalid, NotFound, Unavailable
from fabric.api import ApiError
from services.nats_console.server import server_view
from services.nats_console.streams import console_for
from web.auth.guards import authorize, principal_of, requires, requires_global_admin

Req = Request[Any, Any, Any]
NAME_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
StreamPath = Annotated[str, PathParameter(pattern=NAME_PATTERN)]
ConsumerPath = Annotated[str, PathParameter(pattern=NAME_PATTERN)]
SubjectQuery = Annotated[str, QueryParameter(max_length=255)]
# Any token a subject can hold (devices may publish '/', '?', '#', '%' ...): no whitespace or
# control characters, no '.', and '*' / '>' only as whole wildcard tokens.
_TOKEN = re.compile(r"^[^\s.*>\x00-\x1f\x7f]+$")


def check_filter(subject: str) -> str:
    """A subject filter (``*`` tokens, a final ``>``) or ``Invalid`` with the reason."""
    tokens = subject.split(".")
    for i, tok in enumerate(tokens):
        if tok == ">" and i == len(tokens) - 1:
            continue
        if tok != "*" and not _TOKEN.match(tok):
            raise Invalid(
                f"invalid subject filter {subject[:300]!r}: tokens are '*', a final '>', or characters other than"
                " spaces, '.', '*' and '>'"
            )
    return subject


def api_failure(exc: ApiError, what: str) -> Exception:
    """The HTTP error for a JetStream API error."""
    if exc.code == 404:
        return NotFound(f"{what} not found")
    if exc.code == 503:
        return Unavailable(f"{what}: {exc.description}")
    return Invalid(f"{what}: {exc.description}")


def _ctx(request: Req, tab: str, **values: Any) -> dict[str, Any]:
    principal = principal_of(request)
    return {"active": "nats", "tab": tab, "can_purge": principal.is_global_admin, **values}


class StreamsController(Controller):
    """``/nats/streams``, a stream's page, and its purge (dry run, then confirm)."""

    include_in_schema = False
    guards = [requires("read")]

    @get("/nats")
    async def index(self) -> Redirect:
        """The console starts at the streams list."""
        return Redirect("/nats/streams", status_code=302)

    @get("/nats/streams")
    async def streams(self, request: Req, runtime: NamedDependency[Runtime]) -> Template:
        """Every stream with counts, sizes, sequences, times and message rate."""
        try:
            rows = await console_for(runtime).streams()
        except ApiError as exc:
            raise api_failure(exc, "streams") from None
        return Template("pages/nats-streams.html", context=_ctx(request, "streams", streams=rows))

    @get("/nats/streams/{name:str}")
    async def stream(self, request: Req, name: StreamPath, runtime: NamedDependency[Runtime]) -> Template:
        """Config, state, subject tree with per-subject counts, consumers."""
        try:
            detail = await console_for(runtime).stream(name, principal_of(request).org_ids)
        except ApiError as exc:
            raise api_failure(exc, f"stream {name}") from None
        purged = request.query_params.get("purged", "")
        return Template(
            "pages/nats-stream.html",
            context=_ctx(request, "streams", d=detail, purged=purged if purged.isdigit() else ""),
        )

    @get("/nats/streams/{name:str}/purge", guards=[requires_global_admin()])
    async def purge_preview(
        self, request: Req, name: StreamPath, runtime: NamedDependency[Runtime], subject: SubjectQuery = ""
    ) -> Template:
        """Dry run: how many messages the purge would remove, and the confirm form."""
        subject = check_filter(subject) if subject else ""
        try:
            count = await console_for(runtime).purge_count(name, subject)
        except ApiError as exc:
            raise api_failure(exc, f"stream {name}") from None
        return Template(
            "pages/nats-stream-purge.html", context=_ctx(request, "streams", stream=name, subject=subject, n=count)
        )

    @post("/nats/streams/{name:str}/purge", guards=[requires_global_admin()])
    async def purge(self, request: Req, name: StreamPath, runtime: NamedDependency[Runtime]) -> Redirect:
        """Purge everything or one subject filter (admins over every organisation; audited)."""
        actor = await authorize(request, None, "admin")
        form = await request.form()
        raw = form.get("subject", "")
        subject = check_filter(raw) if isinstance(raw, str) and raw else ""
        try:
            purged = await console_for(runtime).purge(name, subject)
        except ApiError as exc:
            await runtime.services.audit.record(
                actor, "nats.stream.purge", target=name, outcome="failure", detail=exc.description
            )
            raise api_failure(exc, f"stream {name}") from None
        await runtime.services.audit.record(
            actor, "nats.stream.purge", target=name, detail=f"subject={subject or '(all)'} purged={purged}"
        )
        return Redirect(f"/nats/streams/{name}?purged={purged}", status_code=303)


class ConsumersController(Controller):
    """``/nats/consumers`` and a consumer's page, with the health score."""

    include_in_schema = False
    guards = [requires("read")]

    @get("/nats/consumers")
    async def consumers(self, request: Req, runtime: NamedDependency[Runtime]) -> Template:
        """Every consumer of every stream with pending counts, health and stall flag."""
        try:
            rows = await console_for(runtime).consumers()
        except ApiError as exc:
            raise api_failure(exc, "consumers") from None
        return Template("pages/nats-consumers.html", context=_ctx(request, "consumers", consumers=rows))

    @get("/nats/consumers/{stream:str}/{name:str}")
    async def consumer(
        self, request: Req, stream: StreamPath, name: ConsumerPath, runtime: NamedDependency[Runtime]
    ) -> Template:
        """State, configuration and the health score's components."""
        try:
            row = await console_for(runtime).consumer(stream, name)
        except ApiError as exc:
            raise api_failure(exc, f"consumer {stream}/{name}") from None
        return Template("pages/nats-consumer.html", context=_ctx(request, "consumers", c=row))


class ServerController(Controller):
    """``/nats/server``: JetStream usage vs limits, traffic, version, uptime, disk."""

    include_in_schema = False
    guards = [requires("read")]

    @get("/nats/server")
    async def server(self, request: Req, runtime: NamedDependency[Runtime]) -> Template:
        """The server view."""
        try:
            view = await server_view(console_for(runtime))
        except ApiError as exc:
            raise api_failure(exc, "JetStream account") from None
        return Template("pages/nats-server.html", context=_ctx(request, "server", s=view))
