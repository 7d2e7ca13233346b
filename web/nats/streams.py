"""``/nats/streams``: the streams list, a stream's page, and its purge.

Everyone signed in may read; purging is for admins over every organisation (a purge
touches every organisation's messages), is previewed first (dry run with the count),
then confirmed, and is audited. Callers who see only some organisations get subject
trees limited to their organisations' subjects.
"""

from __future__ import annotations

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.response import Redirect, Template

from services.nats_console.streams import ApiError, StreamService, api_failure
from web.auth.guards import authorize, principal_of, requires, requires_global_admin
from web.nats.params import Req, StreamPath, SubjectQuery, check_filter, page_context


class StreamsController(Controller):
    """``/nats/streams``, a stream's page, and its purge (dry run, then confirm)."""

    include_in_schema = False
    guards = [requires("read")]

    @get("/nats")
    async def index(self) -> Redirect:
        """The console starts at the streams list."""
        return Redirect("/nats/streams", status_code=302)

    @get("/nats/streams")
    async def streams(self, request: Req, nats_streams: NamedDependency[StreamService]) -> Template:
        """Every stream with counts, sizes, sequences, times and message rate."""
        try:
            rows = await nats_streams.streams()
        except ApiError as exc:
            raise api_failure(exc, "streams") from None
        return Template("pages/nats-streams.html", context=page_context(request, "streams", streams=rows))

    @get("/nats/streams/{name:str}")
    async def stream(self, request: Req, name: StreamPath, nats_streams: NamedDependency[StreamService]) -> Template:
        """Config, state, subject tree with per-subject counts, consumers."""
        try:
            detail = await nats_streams.stream(name, principal_of(request).org_ids)
        except ApiError as exc:
            raise api_failure(exc, f"stream {name}") from None
        purged = request.query_params.get("purged", "")
        return Template(
            "pages/nats-stream.html",
            context=page_context(request, "streams", d=detail, purged=purged if purged.isdigit() else ""),
        )

    @get("/nats/streams/{name:str}/purge", guards=[requires_global_admin()])
    async def purge_preview(
        self, request: Req, name: StreamPath, nats_streams: NamedDependency[StreamService], subject: SubjectQuery = ""
    ) -> Template:
        """Dry run: how many messages the purge would remove, and the confirm form."""
        subject = check_filter(subject) if subject else ""
        try:
            count = await nats_streams.purge_count(name, subject)
        except ApiError as exc:
            raise api_failure(exc, f"stream {name}") from None
        return Template(
            "pages/nats-stream-purge.html",
            context=page_context(request, "streams", stream=name, subject=subject, n=count),
        )

    @post("/nats/streams/{name:str}/purge", guards=[requires_global_admin()])
    async def purge(self, request: Req, name: StreamPath, nats_streams: NamedDependency[StreamService]) -> Redirect:
        """Purge everything or one subject filter (admins over every organisation; audited)."""
        actor = await authorize(request, None, "admin")
        form = await request.form()
        raw = form.get("subject", "")
        subject = check_filter(raw) if isinstance(raw, str) and raw else ""
        try:
            purged = await nats_streams.purge(actor, name, subject)
        except ApiError as exc:
            raise api_failure(exc, f"stream {name}") from None
        return Redirect(f"/nats/streams/{name}?purged={purged}", status_code=303)
