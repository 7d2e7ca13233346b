"""Console pages and their live streams (overview for now)."""

from __future__ import annotations

from collections.abc import Sequence

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.response import ServerSentEvent, ServerSentEventMessage, Template

from app.auth.guards import requires
from app.runtime import Runtime
from app.sse.hub import Update
from app.sse.stream import event_stream
from app.status import SYSTEM_TOPIC, system_status


class PagesController(Controller):
    """Full pages; each live region is a partial that the page's stream refreshes."""

    include_in_schema = False
    guards = [requires("read")]

    @get("/")
    async def overview(self, runtime: NamedDependency[Runtime]) -> Template:
        """The overview page."""
        return Template("pages/overview.html", context={"status": await system_status(runtime), "active": "overview"})

    @get("/events/overview")
    async def overview_events(self, runtime: NamedDependency[Runtime]) -> ServerSentEvent:
        """Live updates for the overview page."""
        client = runtime.hub.subscribe(lambda u: u.topic == SYSTEM_TOPIC)
        env = runtime.services.templates

        async def resync() -> list[ServerSentEventMessage]:
            return await render([Update(SYSTEM_TOPIC, "status")])

        async def render(_batch: Sequence[Update]) -> list[ServerSentEventMessage]:
            html = env.get_template("partials/system-status.html").render(status=await system_status(runtime))
            return [ServerSentEventMessage(event="system-status", data=html)]

        return ServerSentEvent(event_stream(runtime.hub, client, resync, render))
