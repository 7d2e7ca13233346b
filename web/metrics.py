"""``/metrics`` (Prometheus text) and ``/system/metrics`` (charts of the last hour, live)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.response import ServerSentEvent, Template
from prometheus_client import CONTENT_TYPE_LATEST

from core.topics import Topic
from services.hub import Update
from services.metrics.service import MetricsService
from web.auth.guards import LoginRequired, deny, principal_of, requires
from web.sse.live import LiveStreams, Messages

Req = Request[Any, Any, Any]


class MetricsController(Controller):
    """Prometheus scrape endpoint and the metrics page."""

    include_in_schema = False

    @get("/metrics", opt={"public": True})
    async def prometheus(self, request: Req, metrics: NamedDependency[MetricsService]) -> Response[bytes]:
        """Prometheus text format; needs a session or an API key with read scope unless
        ``OVERWATCH_METRICS_PUBLIC`` is set."""
        if not metrics.public:
            principal = principal_of(request)
            if not principal.authenticated:
                raise LoginRequired("sign in or present an API key with read scope")
            if not principal.can("read"):
                await deny(request, principal, "needs read permission")
        return Response(await metrics.prometheus(), media_type=CONTENT_TYPE_LATEST)

    @get("/system/metrics", guards=[requires("read")])
    async def page(self, request: Req, metrics: NamedDependency[MetricsService]) -> Template:
        """Charts of the last hour, refreshed live as samples arrive."""
        context = {
            "charts": await metrics.charts(principal_of(request)),
            "interval": metrics.interval,
            "active": "metrics",
        }
        return Template("pages/metrics.html", context=context)

    @get("/events/metrics", guards=[requires("read")])
    async def metrics_events(
        self, request: Req, metrics: NamedDependency[MetricsService], live: NamedDependency[LiveStreams]
    ) -> ServerSentEvent:
        """The charts, re-rendered after every sampling round."""
        principal = principal_of(request)

        async def resync() -> Messages:
            return [live.event(request, "metrics-charts", {"charts": await metrics.charts(principal)})]

        async def render(_batch: Sequence[Update]) -> Messages:
            return await resync()

        return live.page_stream(request, {Topic.METRICS}, resync, render, max_fps=1.0)
