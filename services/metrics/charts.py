"""Server-rendered SVG line charts over a fixed time window (no JavaScript, no style attributes)."""

from __future__ import annotations

import msgspec

WIDTH, HEIGHT = 600.0, 120.0
WINDOW_S = 3600.0


class Chart(msgspec.Struct, frozen=True, kw_only=True):
    """One chart: its polyline, y-axis range and the latest value."""

    key: str
    title: str
    unit: str
    points: str
    area: str
    latest: float | None
    low: float
    high: float
    count: int


def line_chart(
    key: str, title: str, unit: str, samples: list[tuple[float, float]], now: float, window_s: float = WINDOW_S
) -> Chart:
    """Scale ``(ts, value)`` samples of the last ``window_s`` seconds into a WIDTH×HEIGHT chart.

    The x axis is the window itself (charts line up with each other); the y axis runs
    from 0 (or the minimum, if negative) to the maximum.
    """
    start = now - window_s
    data = [(t, v) for t, v in samples if t >= start]
    if not data:
        return Chart(key=key, title=title, unit=unit, points="", area="", latest=None, low=0.0, high=0.0, count=0)
    values = [v for _, v in data]
    low, high = min(0.0, min(values)), max(values)
    span = max(high - low, 1e-9)

    def xy(t: float, v: float) -> str:
        return f"{(t - start) / window_s * WIDTH:.1f},{HEIGHT - 2 - (v - low) / span * (HEIGHT - 4):.1f}"

    points = " ".join(xy(t, v) for t, v in data)
    first_x = (data[0][0] - start) / window_s * WIDTH
    last_x = (data[-1][0] - start) / window_s * WIDTH
    area = f"{first_x:.1f},{HEIGHT:.1f} {points} {last_x:.1f},{HEIGHT:.1f}"
    return Chart(
        key=key,
        title=title,
        unit=unit,
        points=points,
        area=area,
        latest=values[-1],
        low=low,
        high=high,
        count=len(data),
    )
