"""Optional OpenTelemetry traces: HTTP requests and worker batches, exported over OTLP.

Off unless an OTLP endpoint is configured with the SDK's own variables
(``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``; the
exporter reads the rest of ``OTEL_*`` itself) and the ``otlp`` extra is installed.
When off, the middleware is not installed and workers get the API's no-op tracer, so
nothing on a hot path pays for tracing.

Streaming responses (SSE under ``/events``, MJPEG under ``/video``) get no span: a span
per stream would stay open for hours and a span per chunk would flood the collector.
"""

from __future__ import annotations

import importlib
import logging
import os
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from core import __version__
from services.metrics.asgi import StatusNoting

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("overwatch.tracing")

STREAMING_PREFIXES = ("/events", "/video/")
OTLP_SPAN_EXPORTER = "opentelemetry.exporter.otlp.proto.http.trace_exporter"


def otlp_span_exporter() -> SpanExporter | None:
    """The OTLP/HTTP span exporter when an endpoint is configured and the package is installed."""
    if not (os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        return None
    try:
        module = importlib.import_module(OTLP_SPAN_EXPORTER)
    except ImportError:
        log.warning("an OTLP endpoint is set but the otlp extra is not installed (pip install '.[otlp]'); no traces")
        return None
    exporter: SpanExporter = module.OTLPSpanExporter()
    return exporter


class Tracing:
    """The process's tracer provider (or the no-op tracer when tracing is off)."""

    def __init__(self, exporter: SpanExporter | None = None) -> None:
        exporter = exporter or otlp_span_exporter()
        self.provider: TracerProvider | None = None
        self.tracer: trace.Tracer = trace.NoOpTracer()
        if exporter is not None:
            # Our own provider, not the global one: several runtimes can share a process (tests).
            self.provider = TracerProvider(
                resource=Resource.create({"service.name": "overwatch", "service.version": __version__})
            )
            self.provider.add_span_processor(BatchSpanProcessor(exporter))
            self.tracer = self.provider.get_tracer("overwatch", __version__)
            log.info("exporting traces over OTLP")

    @property
    def enabled(self) -> bool:
        """Whether spans are recorded and exported."""
        return self.provider is not None

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """ASGI middleware: one server span per HTTP request (not for streams); a no-op when off."""
        if not self.enabled:
            return app
        tracer = self.tracer

        async def traced(scope: Scope, receive: Receive, send: Send) -> None:
            path = str(scope.get("path", ""))
            if str(scope["type"]) != "http" or path.startswith(STREAMING_PREFIXES):
                await app(scope, receive, send)
                return
            method = str(scope.get("method", ""))
            with tracer.start_as_current_span(f"{method} {path}", kind=SpanKind.SERVER) as span:
                noting = StatusNoting(send)
                try:
                    await app(scope, receive, noting)
                finally:
                    # The route template is known only after routing; it names the span.
                    route = str(scope.get("path_template", "") or "")
                    if route:
                        span.update_name(f"{method} {route}")
                        span.set_attribute("http.route", route)
                    span.set_attribute("http.request.method", method)
                    span.set_attribute("url.path", path)
                    span.set_attribute("http.response.status_code", noting.status)
                    if noting.status >= 500:
                        span.set_status(Status(StatusCode.ERROR))

        return traced

    def shutdown(self) -> None:
        """Flush and stop the exporter."""
        if self.provider is not None:
            self.provider.shutdown()
