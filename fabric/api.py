"""Raw JetStream API requests (JSON in, JSON out) and the rate samples kept between them.

The console reads the server's own JSON rather than nats-py's dataclasses because
those drop fields it shows (``first_ts``, ``last_ts``, per-subject pages).
"""

from __future__ import annotations

import json
import time
from collections import deque
from typing import Any

from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext

API_TIMEOUT = 5.0
RATE_WINDOW_S = 60.0  # samples older than this are dropped
RATE_MIN_SPAN_S = 1.0  # two samples closer than this give no rate yet


class ApiError(Exception):
    """The JetStream API answered with an error (``code`` is the HTTP-like status)."""

    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


def api_prefix(js: JetStreamContext) -> str:
    """The JetStream API prefix of ``js`` (``$JS.API`` unless a domain is configured)."""
    return str(getattr(js, "_prefix", "$JS.API"))


async def request(nc: NATS, subject: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One JetStream API call; raises ``ApiError`` on an error response or no answer."""
    payload = json.dumps(body).encode() if body else b""
    try:
        msg = await nc.request(subject, payload, timeout=API_TIMEOUT)
    except (NatsTimeout, NoRespondersError):
        raise ApiError(503, "JetStream did not answer") from None
    data: dict[str, Any] = json.loads(msg.data or b"{}")
    if "error" in data:
        err = data["error"]
        raise ApiError(int(err.get("code", 500)), str(err.get("description", "JetStream API error")))
    return data


class Rates:
    """Per-key counters sampled over time; the rate is the slope over the last minute."""

    def __init__(self) -> None:
        self._samples: dict[str, deque[tuple[float, float]]] = {}

    def add(self, key: str, value: float, now: float | None = None) -> float | None:
        """Record ``value`` for ``key``; return units per second, or ``None`` until two samples ≥ 1 s apart."""
        now = time.monotonic() if now is None else now
        samples = self._samples.setdefault(key, deque(maxlen=64))
        if samples and value < samples[-1][1]:
            samples.clear()  # counter reset (stream purged or recreated)
        samples.append((now, value))
        while len(samples) > 2 and now - samples[0][0] > RATE_WINDOW_S:
            samples.popleft()
        t0, v0 = samples[0]
        if now - t0 < RATE_MIN_SPAN_S:
            return None
        return (value - v0) / (now - t0)

    def span(self, key: str) -> tuple[float, float] | None:
        """(seconds, value change) over the kept window for ``key``."""
        samples = self._samples.get(key)
        if not samples or len(samples) < 2:
            return None
        return samples[-1][0] - samples[0][0], samples[-1][1] - samples[0][1]

    def recent(self, key: str) -> float | None:
        """Units per second between the last two samples (``None`` with fewer than two)."""
        samples = self._samples.get(key)
        if not samples or len(samples) < 2 or samples[-1][0] <= samples[-2][0]:
            return None
        (t0, v0), (t1, v1) = samples[-2], samples[-1]
        return (v1 - v0) / (t1 - t0)
