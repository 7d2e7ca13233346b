"""Sign-in rate limiting per client address (the per-account lockout lives in ``users.py``)."""

from __future__ import annotations

import time
from collections import deque

IP_WINDOW = 300.0  # seconds
IP_MAX_ATTEMPTS = 30  # sign-in attempts per client address per window


class IpLimiter:
    """Sliding-window count of sign-in attempts per client address."""

    def __init__(self, limit: int = IP_MAX_ATTEMPTS, window: float = IP_WINDOW) -> None:
        self.limit = limit
        self.window = window
        self._hits: dict[str, deque[float]] = {}

    def allow(self, ip: str) -> bool:
        """Count an attempt; False when the address is over its budget."""
        now = time.monotonic()
        hits = self._hits.setdefault(ip, deque())
        while hits and now - hits[0] > self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            return False
        hits.append(now)
        if len(self._hits) > 10_000:
            self._hits = {k: v for k, v in self._hits.items() if v and now - v[-1] < self.window}
        return True
