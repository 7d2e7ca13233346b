"""The metrics sampler: every ``OVERWATCH_METRICS_INTERVAL`` seconds, one row per series into SQLite.

Runs as a background task of the runtime; it reads the process's figures through
``Metrics`` (worker stats, HTTP totals, the system probe, entity views). Rates are differences of process totals between
rounds. Samples older than ``OVERWATCH_METRICS_RETENTION_HOURS`` are pruned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from core.topics import Topic
from db import metrics as metrics_db
from db.database import Database
from services.hub import Hub, Update
from services.metrics.otel import Metrics
from services.state_view import number

log = logging.getLogger("overwatch.metrics")

PRUNE_EVERY = 30  # rounds between prunes


class Sampler:
    """Turns process totals and gauges into stored samples."""

    def __init__(self, metrics: Metrics, db: Database, hub: Hub, interval: float, retention_hours: float) -> None:
        self.metrics = metrics
        self.db = db
        self.hub = hub  # announces each round (the metrics page re-renders)
        self.interval = interval  # seconds between rounds
        self.retention_hours = retention_hours
        self._last: dict[str, float] = {}
        self._last_at = 0.0
        self.rounds = 0

    def _totals(self) -> dict[str, float]:
        metrics = self.metrics
        stats = metrics.worker_stats().values()
        return {
            "http.requests": float(metrics.requests_total),
            "http.errors": float(metrics.errors_total),
            "workers.processed": float(sum(s.get("processed", 0) for s in stats)),
            "workers.failed": float(sum(s.get("failed", 0) for s in stats)),
        }

    async def collect(self, now: float) -> list[tuple[str, float]]:
        """One round of ``(series, value)``."""
        metrics = self.metrics
        probe = metrics.probe
        await metrics.refresh_probe(max_age=1.0)
        out: list[tuple[str, float]] = []
        totals = self._totals()
        if self._last_at:
            span = max(now - self._last_at, 1e-3)
            out += [(name, max(0.0, (value - self._last.get(name, 0.0)) / span)) for name, value in totals.items()]
        self._last, self._last_at = totals, now
        views = metrics.entity_views()
        out.append(("sse.clients", float(metrics.sse_clients())))
        out.append(("entities.live", float(sum(1 for v in views.values() if v.is_live))))
        out += [(f"consumer.lag:{name}", float(c.pending)) for name, c in probe.consumers.items()]
        if probe.dlq_messages is not None:
            out.append(("dlq.messages", float(probe.dlq_messages)))
        if probe.disk_free_percent is not None:
            out.append(("disk.free", probe.disk_free_percent))
        for entity_id, pipeline in metrics.pipelines().items():
            for field, series in (("fps", "detect.fps"), ("inference_ms_p50", "detect.inference_ms")):
                value = number(pipeline.get(field))
                if value is not None:
                    out.append((f"{series}:{entity_id}", value))
        return out

    async def sample_once(self) -> int:
        """Collect, store and announce one round; return the number of series stored."""
        now = time.time()
        samples = await self.collect(now)
        await metrics_db.insert_samples(self.db, now, samples)
        self.rounds += 1
        if self.rounds % PRUNE_EVERY == 1:
            await metrics_db.prune_samples(self.db, now - self.retention_hours * 3600)
        self.hub.publish(Update(Topic.METRICS, "sample"))
        return len(samples)

    async def run(self, stopping: asyncio.Event) -> None:
        """Sample until ``stopping`` is set; a failed round is logged and the next one tried."""
        interval = self.interval
        while not stopping.is_set():
            try:
                await self.sample_once()
            except Exception:
                log.exception("metrics sampling failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), interval)
