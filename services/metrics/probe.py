"""System figures that cost a request to read (consumer lag, dead-letter stream, disk).

Read at most once per ``max_age`` by whoever needs them first (the sampler, the rule
evaluator, a ``/metrics`` scrape); observable instruments and rules read the cached
values, so no hot path ever waits on JetStream.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core import topology

if TYPE_CHECKING:
    from nats.js import JetStreamContext

log = logging.getLogger("overwatch.metrics")

DLQ_HISTORY_S = 3600.0  # dead-letter growth windows up to an hour


@dataclass
class ConsumerFigures:
    """One durable consumer's backlog."""

    stream: str
    pending: int = 0
    ack_pending: int = 0
    redelivered: int = 0


class SystemProbe:
    """Cached consumer lag, dead-letter stream counters and free disk space."""

    def __init__(self, data_path: Path) -> None:
        self.data_path = data_path
        self.consumers: dict[str, ConsumerFigures] = {}
        self.dlq_messages: int | None = None
        self.dlq_last_seq: int | None = None
        self.disk_free_percent: float | None = None
        self.at = 0.0
        self.errors = 0
        self._dlq_history: deque[tuple[float, int]] = deque()
        self._lock = asyncio.Lock()

    async def refresh(self, js: JetStreamContext, max_age: float = 0.0) -> None:
        """Read everything again unless the last read is younger than ``max_age`` seconds."""
        if time.time() - self.at < max_age:
            return
        async with self._lock:
            if time.time() - self.at < max_age:
                return  # someone else refreshed while we waited
            await self._read(js)
            self.at = time.time()

    async def _read(self, js: JetStreamContext) -> None:
        for spec in topology.CONSUMERS:
            durable = spec.config.durable_name or ""
            try:
                info = await asyncio.wait_for(js.consumer_info(spec.stream, durable), 2.0)
            except Exception as exc:  # noqa: BLE001 - a missing consumer is a figure, not a crash
                self.errors += 1
                log.debug("consumer_info %s/%s failed: %s", spec.stream, durable, exc)
                continue
            self.consumers[durable] = ConsumerFigures(
                stream=spec.stream,
                pending=int(info.num_pending or 0),
                ack_pending=int(info.num_ack_pending or 0),
                redelivered=int(info.num_redelivered or 0),
            )
        try:
            dlq = await asyncio.wait_for(js.stream_info(topology.STREAM_DLQ), 2.0)
            self.dlq_messages = int(dlq.state.messages)
            self.dlq_last_seq = int(dlq.state.last_seq)
            now = time.time()
            self._dlq_history.append((now, self.dlq_last_seq))
            while self._dlq_history and self._dlq_history[0][0] < now - DLQ_HISTORY_S:
                self._dlq_history.popleft()
        except Exception as exc:  # noqa: BLE001
            self.errors += 1
            log.debug("dead-letter stream_info failed: %s", exc)
        try:
            usage = shutil.disk_usage(self.data_path)
            self.disk_free_percent = round(usage.free / usage.total * 100, 2) if usage.total else None
        except OSError as exc:
            self.errors += 1
            log.debug("disk usage of %s failed: %s", self.data_path, exc)

    def dlq_growth(self, window_s: float, now: float | None = None) -> float | None:
        """Messages added to the dead-letter stream within the last ``window_s`` seconds.

        The stream's last sequence only grows (deletes and expiry do not lower it), so
        the difference to the oldest reading inside the window counts additions.
        """
        if self.dlq_last_seq is None or not self._dlq_history:
            return None
        now = time.time() if now is None else now
        base = next((seq for t, seq in self._dlq_history if t >= now - window_s), self.dlq_last_seq)
        older = [seq for t, seq in self._dlq_history if t < now - window_s]
        if older:
            base = older[-1]  # the last reading before the window: counts what arrived inside it
        return float(self.dlq_last_seq - base)
