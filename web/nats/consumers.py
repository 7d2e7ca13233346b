"""``/nats/consumers``: every consumer with pending counts, health score and stall flag."""

from __future__ import annotations

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.response import Template

from services.nats_console.streams import ApiError, StreamService, api_failure
from web.auth.guards import requires
from web.nats.params import ConsumerPath, Req, StreamPath, page_context


class ConsumersController(Controller):
    """``/nats/consumers`` and a consumer's page, with the health score."""

    include_in_schema = False
    guards = [requires("read")]

    @get("/nats/consumers")
    async def consumers(self, request: Req, nats_streams: NamedDependency[StreamService]) -> Template:
        """Every consumer of every stream with pending counts, health and stall flag."""
        try:
            rows = await nats_streams.consumers()
        except ApiError as exc:
            raise api_failure(exc, "consumers") from None
        return Template("pages/nats-consumers.html", context=page_context(request, "consumers", consumers=rows))

    @get("/nats/consumers/{stream:str}/{name:str}")
    async def consumer(
        self, request: Req, stream: StreamPath, name: ConsumerPath, nats_streams: NamedDependency[StreamService]
    ) -> Template:
        """State, configuration and the health score's components."""
        try:
            row = await nats_streams.consumer(stream, name)
        except ApiError as exc:
            raise api_failure(exc, f"consumer {stream}/{name}") from None
        return Template("pages/nats-consumer.html", context=page_context(request, "consumers", c=row))
