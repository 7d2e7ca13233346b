"""The one source of time for time-driven code (sessions, lockouts, rules, liveness, expiry, retention).

Production code takes a ``Clock`` (default ``SYSTEM_CLOCK``) instead of calling ``time.time()``
itself, so a test can hand it a manual clock and move time on explicitly instead of sleeping.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Wall-clock and monotonic time."""

    def now(self) -> float:
        """Seconds since the epoch (``time.time()``)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (``time.monotonic()``)."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


SYSTEM_CLOCK: Clock = SystemClock()


def utc_iso(clock: Clock) -> str:
    """``clock``'s now as ISO 8601 UTC with milliseconds and ``Z`` (the contracts' form)."""
    when = datetime.fromtimestamp(clock.now(), UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
