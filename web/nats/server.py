"""``/nats/server``: JetStream usage vs limits, traffic, version, uptime, disk."""

from __future__ import annotations

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.response import Template

from services.nats_console.server import ServerService
from services.nats_console.streams import ApiError, api_failure
from web.auth.guards import requires
from web.nats.params import Req, page_context


class ServerController(Controller):
    """``/nats/server``: JetStream usage vs limits, traffic, version, uptime, disk."""

    include_in_schema = False
    guards = [requires("read")]

    @get("/nats/server")
    async def server(self, request: Req, nats_server_view: NamedDependency[ServerService]) -> Template:
        """The server view."""
        try:
            view = await nats_server_view.view()
        except ApiError as exc:
            raise api_failure(exc, "JetStream account") from None
        fabric = nats_server_view.fabric()  # cluster, links and projections (docs/scale-out.md)
        return Template("pages/nats-server.html", context=page_context(request, "server", s=view, fabric=fabric))
