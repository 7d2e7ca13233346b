"""``/metrics`` (Prometheus text) and ``/system/metrics`` (charts of the last hour, live)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.response import ServerSentEvent, Template
from prometheus_client import CONTENT_TYPE_LATEST

from app.runtime import Runtime
from db import metrics as metrics_db
from services.auth.principal import Principal
from services.hub import Update
from services.metrics.sampler import METRICS_TOPIC
from web.auth.guards import LoginRequired, deny, principal_of, requires
from web.metrics.charts import WINDOW_S, Chart, line_chart
from web.sse.live import Messages, event, page_stream

Req = Request[Any, Any, Any]

# Fixed charts: series, title, unit. Per-consumer and per-camera series follow them.
CHARTS = (
    ("http.requests", "HTTP requests", "/s"),
    ("http.errors", "HTTP 5xx responses", "/s"),
    ("sse.clients", "SSE clients", ""),
    ("workers.processed", "Worker messages processed", "/s"),
    ("workers.failed", "Worker failures", "/s"),
    ("dlq.messages", "Dead-letter messages", ""),
    ("disk.free", "Disk free", "%"),
    ("entities.live", "Live entities", ""),
)
PER_SUBJECT = (
    ("consumer.lag:", "Consumer lag", "msgs"),
    ("detect.fps:", "Detection fps", "fps"),
    ("detect.inference_ms:", "Inference p50", "ms"),
)


async def charts(runtime: Runtime, principal: Principal) -> list[Chart]:
    """Every chart the caller may see, from the stored samples of the last hour."""
    now = time.time()
    series = await metrics_db.series_since(runtime.db, now - WINDOW_S)
    out = [line_chart(key, title, unit, series.get(key, []), now) for key, title, unit in CHARTS]
    cache = runtime.services.state_cache
    for prefix, title, unit in PER_SUBJECT:
        for key in sorted(k for k in series if k.startswith(prefix)):
            subject = key[len(prefix) :]
            if prefix.startswith("detect."):
                view = cache.get(subject)
                # A camera's figures are shown to those who may see the camera.
                if view is None or not principal.sees(str(view.get("org_id") or "")):
                    continue
            out.append(line_chart(key, f"{title}: {subject}", unit, series[key], now))
    return out


class MetricsController(Controller):
    """Prometheus scrape endpoint and the metrics page."""

    include_in_schema = False

    @get("/metrics", opt={"public": True})
    async def prometheus(self, request: Req, runtime: NamedDependency[Runtime]) -> Response[bytes]:
        """Prometheus text format; needs a session or an API key with read scope unless
        ``OVERWATCH_METRICS_PUBLIC`` is set."""
        if not runtime.settings.metrics_public:
            principal = principal_of(request)
            if not principal.authenticated:
                raise LoginRequired("sign in or present an API key with read scope")
            if not principal.can("read"):
                await deny(request, principal, "needs read permission")
        body = await runtime.metrics.render()
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @get("/system/metrics", guards=[requires("read")])
    async def page(self, request: Req, runtime: NamedDependency[Runtime]) -> Template:
        """Charts of the last hour, refreshed live as samples arrive."""
        context = {
            "charts": await charts(runtime, principal_of(request)),
            "interval": runtime.settings.metrics_interval,
            "active": "metrics",
        }
        return Template("pages/metrics.html", context=context)

    @get("/events/metrics", guards=[requires("read")])
    async def metrics_events(self, request: Req, runtime: NamedDependency[Runtime]) -> ServerSentEvent:
        """The charts, re-rendered after every sampling round."""
        principal = principal_of(request)

        async def resync() -> Messages:
            return [event(runtime, request, "metrics-charts", {"charts": await charts(runtime, principal)})]

        async def render(_batch: Sequence[Update]) -> Messages:
            return await resync()

        return page_stream(request, runtime, {METRICS_TOPIC}, resync, render, max_fps=1.0)
