"""The metrics sampler: every ``OVERWATCH_METRICS_INTERVAL`` seconds, one row per series into SQLite.

Runs as a background task of the runtime (it reads the worker manager and the HTTP
totals, which workers cannot see). Rates are differences of process totals between
rounds. Samples older than ``OVERWATCH_METRICS_RETENTION_HOURS`` are pruned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from db import metrics as metrics_db
from services.hub import Update

if TYPE_CHECKING:
    from app.runtime import Runtime

log = logging.getLogger("overwatch.metrics")

METRICS_TOPIC = "metrics"
PRUNE_EVERY = 30  # rounds between prunes


class Sampler:
    """Turns process totals and gauges into stored samples."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._last: dict[str, float] = {}
        self._last_at = 0.0
        self.rounds = 0

    def _totals(self) -> dict[str, float]:
        metrics = self.runtime.metrics
        stats = self.runtime.workers.stats().values()
        return {
            "http.requests": float(metrics.requests_total),
            "http.errors": float(metrics.errors_total),
            "workers.processed": float(sum(s.get("processed", 0) for s in stats)),
            "workers.failed": float(sum(s.get("failed", 0) for s in stats)),
        }

    async def collect(self, now: float) -> list[tuple[str, float]]:
        """One round of ``(series, value)``."""
        rt = self.runtime
        probe = rt.metrics.probe
        await probe.refresh(rt.js, max_age=1.0)
        out: list[tuple[str, float]] = []
        totals = self._totals()
        if self._last_at:
            span = max(now - self._last_at, 1e-3)
            out += [(name, max(0.0, (value - self._last.get(name, 0.0)) / span)) for name, value in totals.items()]
        self._last, self._last_at = totals, now
        views = rt.services.state_cache.all()
        out.append(("sse.clients", float(rt.hub.client_count)))
        out.append(("entities.live", float(sum(1 for v in views.values() if v.get("is_live")))))
        out += [(f"consumer.lag:{name}", float(c.pending)) for name, c in probe.consumers.items()]
        if probe.dlq_messages is not None:
            out.append(("dlq.messages", float(probe.dlq_messages)))
        if probe.disk_free_percent is not None:
            out.append(("disk.free", probe.disk_free_percent))
        for entity_id, pipeline in rt.metrics.pipelines().items():
            for field, series in (("fps", "detect.fps"), ("inference_ms_p50", "detect.inference_ms")):
                value = pipeline.get(field)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    out.append((f"{series}:{entity_id}", float(value)))
        return out

    async def sample_once(self) -> int:
        """Collect, store and announce one round; return the number of series stored."""
        now = time.time()
        samples = await self.collect(now)
        await metrics_db.insert_samples(self.runtime.db, now, samples)
        self.rounds += 1
        if self.rounds % PRUNE_EVERY == 1:
            hours = self.runtime.settings.metrics_retention_hours
            await metrics_db.prune_samples(self.runtime.db, now - hours * 3600)
        self.runtime.hub.publish(Update(METRICS_TOPIC, "sample"))
        return len(samples)

    async def run(self, stopping: asyncio.Event) -> None:
        """Sample until ``stopping`` is set; a failed round is logged and the next one tried."""
        interval = self.runtime.settings.metrics_interval
        while not stopping.is_set():
            try:
                await self.sample_once()
            except Exception:
                log.exception("metrics sampling failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), interval)
