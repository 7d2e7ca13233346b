"""What the metrics pages show: the Prometheus exposition and charts of the stored samples."""

from __future__ import annotations

import time

from db import metrics as metrics_db
from db.database import Database
from services.auth.principal import Principal
from services.metrics.charts import WINDOW_S, Chart, line_chart
from services.metrics.otel import Metrics
from services.state_cache import StateCache

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


class MetricsService:
    """The ``/metrics`` scrape and the charts of the last hour.

    ``public``: the scrape needs no credentials (``OVERWATCH_METRICS_PUBLIC``);
    ``interval``: seconds between samples (the page says how fresh its charts are).
    """

    def __init__(self, metrics: Metrics, db: Database, state: StateCache, public: bool, interval: float) -> None:
        self.metrics = metrics
        self.db = db
        self.state = state
        self.public = public
        self.interval = interval

    async def prometheus(self) -> bytes:
        """The Prometheus text exposition."""
        return await self.metrics.render()

    async def charts(self, principal: Principal) -> list[Chart]:
        """Every chart the caller may see, from the stored samples of the last hour."""
        now = time.time()
        series = await metrics_db.series_since(self.db, now - WINDOW_S)
        out = [line_chart(key, title, unit, series.get(key, []), now) for key, title, unit in CHARTS]
        for prefix, title, unit in PER_SUBJECT:
            for key in sorted(k for k in series if k.startswith(prefix)):
                subject = key[len(prefix) :]
                if prefix.startswith("detect."):
                    view = self.state.get(subject)
                    # A camera's figures are shown to those who may see the camera.
                    if view is None or not principal.sees(str(view.get("org_id") or "")):
                        continue
                out.append(line_chart(key, f"{title}: {subject}", unit, series[key], now))
        return out
