"""Server-rendered SVG sparklines (no JavaScript, no style attributes)."""

from __future__ import annotations

import msgspec

WIDTH, HEIGHT = 240.0, 48.0


class Sparkline(msgspec.Struct, frozen=True):
    """An SVG polyline with its label and latest value."""

    label: str
    unit: str
    points: str
    latest: float | None
    low: float | None
    high: float | None
    count: int


def sparkline(
    samples: list[tuple[float, float | None]], label: str, unit: str, lo: float | None = None, hi: float | None = None
) -> Sparkline:
    """Scale ``(t, value)`` samples into a 240×48 polyline (missing values are skipped)."""
    data = [(t, v) for t, v in samples if v is not None]
    if len(data) < 2:
        latest = data[-1][1] if data else None
        return Sparkline(label=label, unit=unit, points="", latest=latest, low=latest, high=latest, count=len(data))
    t0, t1 = data[0][0], data[-1][0]
    values = [v for _, v in data]
    low = min(values) if lo is None else min(lo, min(values))
    high = max(values) if hi is None else max(hi, max(values))
    span_t = max(t1 - t0, 1e-6)
    span_v = max(high - low, 1e-6)
    points = " ".join(
        f"{(t - t0) / span_t * WIDTH:.1f},{HEIGHT - (v - low) / span_v * (HEIGHT - 4) - 2:.1f}" for t, v in data
    )
    return Sparkline(
        label=label, unit=unit, points=points, latest=values[-1], low=min(values), high=max(values), count=len(data)
    )
