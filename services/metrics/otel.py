"""OpenTelemetry SDK metrics of one server process, exported as Prometheus text at ``/metrics``.

Only HTTP requests are counted as they happen (one counter add and one histogram
record per request). Everything else is an observable instrument whose callback
reads figures the process keeps anyway (worker stats, the hub, the state cache, the
system probe) at scrape time, so no hot path pays for metrics. Those figures come from
``MetricSources``, which the composition root attaches once the runtime has started;
until then they observe no worker, entity or writer figures. Each runtime has its own
``MeterProvider`` and Prometheus registry (several runtimes share a test process).

OTLP export is optional: when an OTLP exporter package is importable and one of the
SDK's standard ``OTEL_EXPORTER_OTLP_*ENDPOINT`` variables is set, a periodic OTLP
reader is added; the exporter reads the rest of its ``OTEL_*`` configuration itself.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, generate_latest

from core import __version__
from services.metrics.asgi import StatusNoting
from services.metrics.probe import SystemProbe
from services.state_view import EntityView, number

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Receive, Scope, Send
    from nats.js import JetStreamContext

log = logging.getLogger("overwatch.metrics")

# Fields of the detection worker's ``analytics.pipeline`` exported as gauges per camera entity.
PIPELINE_FIELDS = (
    "fps",
    "frames_captured",
    "frames_processed",
    "frames_dropped",
    "inference_ms_p50",
    "inference_ms_p99",
    "events_published",
    "events_failed",
    "events_dropped",
    "events_buffered",
    "kv_writes",
    "kv_conflicts",
    "kv_failures",
    "video_frames",
    "nats_reconnects",
    "source_reconnects",
    "source_connected",
)
WORKER_COUNTERS = (
    "processed",
    "failed",
    "dead_lettered",
    "dlq_refused",
    "dlq_truncated",
    "naks",
    "restarts",
    "reply_injections",
)
OTLP_EXPORTERS = (
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.metric_exporter",
)


def otlp_reader() -> MetricReader | None:
    """A periodic OTLP reader when an exporter is installed and an endpoint is configured."""
    # The SDK's own variables (not Overwatch settings): the exporter reads them itself.
    if not (os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")):
        return None
    for module_name in OTLP_EXPORTERS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        log.info("exporting metrics over OTLP with %s", module_name)
        return PeriodicExportingMetricReader(module.OTLPMetricExporter())
    log.warning("OTEL_EXPORTER_OTLP_ENDPOINT is set but no OTLP exporter package is installed; OTLP export is off")
    return None


class KvWriter(Protocol):
    """An EntityState writer's counters (``fabric.state_store.StateStore``)."""

    @property
    def writes(self) -> int:
        """Compare-and-set writes that succeeded."""

    @property
    def conflicts(self) -> int:
        """Compare-and-set writes another writer got in before."""


Views = Mapping[str, EntityView]


@dataclass(frozen=True)
class MetricSources:
    """Where the observable instruments and the sampler read the process's figures.

    Built by the composition root once the runtime has started (workers, services and
    the JetStream context exist): each field is a plain callable over the part it reads.
    """

    js: JetStreamContext  # the system probe's consumer and dead-letter reads
    sse_clients: Callable[[], int]
    worker_stats: Callable[[], Mapping[str, Mapping[str, Any]]]  # worker name -> WorkerStats fields
    worker_status: Callable[[], Mapping[str, bool]]  # worker name -> task running
    dlq_refused: Callable[[], int]  # dead letters refused by organisation quotas since start, in total
    kv_writers: Callable[[], Mapping[str, KvWriter]]  # writer name -> its counters
    entity_views: Callable[[], Views]  # entity id -> the state cache's typed view
    rejected: Callable[[], Mapping[str, Mapping[str, int]]]  # source ("state", "registry") -> reason -> count


class Metrics:
    """The process's instruments, the Prometheus registry, and the system probe."""

    def __init__(self, data_path: Path) -> None:
        self.sources: MetricSources | None = None  # None until ``attach`` (runtime not started)
        self.registry = CollectorRegistry(auto_describe=True)
        self.probe = SystemProbe(data_path)
        readers: list[MetricReader] = [PrometheusMetricReader(registry=self.registry)]
        if (otlp := otlp_reader()) is not None:
            readers.append(otlp)
        self.provider = MeterProvider(
            metric_readers=readers,
            shutdown_on_exit=False,  # the runtime shuts it down; no atexit hook per runtime
            resource=Resource.create({"service.name": "overwatch", "service.version": __version__}),
        )
        meter = self.provider.get_meter("overwatch", __version__)
        self.requests_total = 0  # plain totals for the sampler (rates on the metrics page)
        self.errors_total = 0
        self._requests = meter.create_counter("overwatch.http.requests", "{request}", "HTTP requests served")
        self._duration = meter.create_histogram(
            "overwatch.http.request.duration", "s", "HTTP request duration (whole stream for SSE)"
        )
        gauge, counter = meter.create_observable_gauge, meter.create_observable_counter
        gauge("overwatch.sse.clients", [self._sse], "{client}", "Connected SSE streams")
        for field in WORKER_COUNTERS:
            counter(f"overwatch.worker.{field}", [self._worker(field)], "{message}", f"Worker {field} count")
        gauge("overwatch.worker.running", [self._running], "1", "1 when the worker's task is running")
        gauge("overwatch.consumer.lag", [self._consumer("pending")], "{message}", "Messages pending on a consumer")
        gauge("overwatch.consumer.ack_pending", [self._consumer("ack_pending")], "{message}", "Unacknowledged")
        gauge("overwatch.consumer.redelivered", [self._consumer("redelivered")], "{message}", "Redelivered")
        gauge("overwatch.dlq.messages", [self._dlq], "{message}", "Messages in the dead-letter stream")
        counter("overwatch.dlq.refused", [self._dlq_refused], "{message}", "Dead letters refused by an org's quota")
        gauge("overwatch.disk.free", [self._disk], "%", "Free space on the data directory's disk")
        counter("overwatch.kv.writes", [self._kv("writes")], "{write}", "EntityState CAS writes by writer")
        counter("overwatch.kv.conflicts", [self._kv("conflicts")], "{conflict}", "EntityState CAS conflicts by writer")
        gauge("overwatch.entities", [self._entities], "{entity}", "Entities in the state cache by liveness")
        counter(
            "overwatch.org_wall.rejected",
            [self._org_wall],
            "{record}",
            "State values and registry records refused because they disagree with the registry (by source, reason)",
        )
        for field in PIPELINE_FIELDS:
            gauge(f"overwatch.detect.{field}", [self._pipeline(field)], "1", f"Detection worker {field}")

    # ------------------------------------------------------------------ HTTP

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """ASGI middleware counting requests by method, route template and status."""

        async def metered(scope: Scope, receive: Receive, send: Send) -> None:
            if str(scope["type"]) != "http":
                await app(scope, receive, send)
                return
            started = time.perf_counter()
            noting = StatusNoting(send)
            try:
                await app(scope, receive, noting)
            finally:
                route = str(scope.get("path_template", "") or "unmatched")
                self.record(str(scope.get("method", "")), route, noting.status, started)

        return metered

    def record(self, method: str, route: str, status: int, started: float) -> None:
        """Count one finished request."""
        attrs: dict[str, str | int] = {
            "http.request.method": method,
            "http.route": route,
            "http.response.status_code": status,
        }
        self._requests.add(1, attrs)
        self._duration.record(time.perf_counter() - started, attrs)
        self.requests_total += 1
        if status >= 500:
            self.errors_total += 1

    # ------------------------------------------------------------------ sources

    def attach(self, sources: MetricSources) -> None:
        """Start observing the started runtime's figures."""
        self.sources = sources

    async def refresh_probe(self, max_age: float) -> None:
        """Re-read the system probe's figures if older than ``max_age`` seconds (not before ``attach``)."""
        if self.sources is not None:
            await self.probe.refresh(self.sources.js, max_age=max_age)

    def sse_clients(self) -> int:
        """Connected SSE streams."""
        return self.sources.sse_clients() if self.sources is not None else 0

    def worker_stats(self) -> Mapping[str, Mapping[str, Any]]:
        """Each worker's counters."""
        return self.sources.worker_stats() if self.sources is not None else {}

    def entity_views(self) -> Views:
        """Every shown entity's typed state view."""
        return self.sources.entity_views() if self.sources is not None else {}

    # ------------------------------------------------------------------ export

    async def render(self) -> bytes:
        """The Prometheus text exposition (system figures refreshed if older than 2 s)."""
        try:
            await self.refresh_probe(max_age=2.0)
        except Exception:
            log.debug("probe refresh failed", exc_info=True)
        return generate_latest(self.registry)

    def shutdown(self) -> None:
        """Stop the provider (flushes an OTLP reader)."""
        try:
            self.provider.shutdown(timeout_millis=2000)
        except Exception:
            log.debug("meter provider shutdown failed", exc_info=True)

    # ------------------------------------------------------------------ callbacks

    def _sse(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self.sse_clients())]

    def _worker(self, field: str) -> Any:
        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            return [
                Observation(int(stats.get(field, 0)), {"worker": name}) for name, stats in self.worker_stats().items()
            ]

        return observe

    def _running(self, _options: CallbackOptions) -> Iterable[Observation]:
        status = self.sources.worker_status() if self.sources is not None else {}
        return [Observation(int(up), {"worker": name}) for name, up in status.items()]

    def _consumer(self, field: str) -> Any:
        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            return [
                Observation(getattr(c, field), {"consumer": name, "stream": c.stream})
                for name, c in self.probe.consumers.items()
            ]

        return observe

    def _dlq(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [] if self.probe.dlq_messages is None else [Observation(self.probe.dlq_messages)]

    def _dlq_refused(self, _options: CallbackOptions) -> Iterable[Observation]:
        # One total: /metrics is readable with any org's read key, so no organisation ids here
        # (the dead-letter page shows each caller the counts of the organisations it sees).
        return [Observation(self.sources.dlq_refused() if self.sources is not None else 0)]

    def _disk(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [] if self.probe.disk_free_percent is None else [Observation(self.probe.disk_free_percent)]

    def _kv(self, field: str) -> Any:
        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            writers = self.sources.kv_writers() if self.sources is not None else {}
            return [Observation(int(getattr(s, field)), {"writer": w}) for w, s in writers.items()]

        return observe

    def _org_wall(self, _options: CallbackOptions) -> Iterable[Observation]:
        rejected = self.sources.rejected() if self.sources is not None else {}
        return [
            Observation(n, {"source": source, "reason": reason})
            for source, counts in rejected.items()
            for reason, n in counts.items()
        ]

    def _entities(self, _options: CallbackOptions) -> Iterable[Observation]:
        views = self.entity_views()
        live = sum(1 for v in views.values() if v.is_live)
        return [Observation(live, {"state": "live"}), Observation(len(views) - live, {"state": "offline"})]

    def pipelines(self) -> dict[str, dict[str, Any]]:
        """``analytics.pipeline`` of every entity that has one (camera entities running detection)."""
        out: dict[str, dict[str, Any]] = {}
        for entity_id, view in list(self.entity_views().items()):
            if view.pipeline:
                out[entity_id] = view.pipeline
        return out

    def _pipeline(self, field: str) -> Any:
        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            out = []
            for entity_id, pipeline in self.pipelines().items():
                raw = pipeline.get(field)
                value = float(raw) if isinstance(raw, bool) else number(raw)  # source_connected is a flag
                if value is not None:
                    out.append(Observation(value, {"entity_id": entity_id}))
            return out

        return observe
