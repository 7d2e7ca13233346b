"""OTLP traces: the real exporter posts to a local OTLP/HTTP receiver; HTTP and worker spans, no stream spans."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from app.main import create_app
from core import topology
from tests.helpers import eventually, seed, telemetry

pytestmark = pytest.mark.timeout(60)


class Receiver(ThreadingHTTPServer):
    """Accepts OTLP/HTTP protobuf exports and keeps the span names and attributes."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.spans: list[tuple[str, dict[str, Any]]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # http.server calls do_<METHOD>
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/v1/traces":
            request = ExportTraceServiceRequest.FromString(body)
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    for span in scope.spans:
                        attrs = {a.key: a.value.string_value or a.value.int_value for a in span.attributes}
                        self.server.spans.append((span.name, attrs))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", server.url)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "60000")
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


async def test_http_and_worker_spans_reach_the_collector(receiver: Receiver, make_runtime: Any) -> None:
    runtime = await make_runtime()
    assert runtime.tracing.enabled
    await seed(runtime, entities=1)
    key = (await runtime.services.apikeys.create("t", "t", ["read", "commands", "admin"], None)).key
    await runtime.nc.publish(topology.telemetry_subject("org1", "ent-0"), telemetry(battery=55.0))
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers={"Authorization": f"Bearer {key}"}
    ) as client:
        assert (await client.get("/fleet")).status_code == 200
        assert (await client.get("/api/v1/organizations/org1/entities/ent-0")).status_code == 200
        assert (await client.get("/api/v1/organizations/nope/entities/nothing")).status_code == 404
    def arrived() -> list[tuple[str, dict[str, Any]]] | None:
        # Spans leave in batches: wait for every one this test made, not the first few.
        names = list(receiver.spans)
        routes = [a for n, a in names if n.startswith("GET /api/v1/organizations/{")]
        seen = {n for n, _ in names}
        return names if seen >= {"GET /fleet", "telemetry process"} and len(routes) >= 2 else None

    names = await eventually(arrived, timeout=15, what="spans at the receiver")
    spans = dict(names)
    route = next(n for n in spans if n.startswith("GET /api/v1/organizations/{"))
    assert {a["http.response.status_code"] for n, a in names if n == route} == {200, 404}
    worker = spans["telemetry process"]
    assert worker["messaging.system"] == "nats" and worker["messaging.batch.message_count"] >= 1
    assert not any(n.startswith("GET /events") for n in spans), "SSE streams must not be traced"


async def test_tracing_is_off_without_an_endpoint(make_runtime: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    runtime = await make_runtime()
    assert not runtime.tracing.enabled
    app: Any = object()
    assert runtime.tracing.middleware(app) is app  # nothing wraps the request path
