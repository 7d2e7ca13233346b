"""Consumer health: a 0–100 score from five weighted components, and stall detection.

Every threshold lives in ``THRESHOLDS`` (one frozen struct), so tuning the score is a
data change. ``score`` is a pure function of a ``HealthInputs`` snapshot; the service
derives the inputs from two ``ConsumerInfo`` samples (see ``docs/console.md``).
Component states map to sub-scores healthy = 100, warning = 50, critical = 0 (the
seed document names the bands but not the mapping).
"""

from __future__ import annotations

from typing import Literal

import msgspec

State = Literal["healthy", "warning", "critical"]
Connection = Literal["stable", "reconnects", "disconnected"]


class Weights(msgspec.Struct, frozen=True):
    """Share of each component in the overall score (sums to 1)."""

    lag: float = 0.30
    processing_rate: float = 0.25
    ack_pending: float = 0.20
    redelivery: float = 0.15
    connection: float = 0.10


class HealthThresholds(msgspec.Struct, frozen=True):
    """Every number the health score and stall detection use."""

    weights: Weights = Weights()
    lag_healthy_below: int = 1_000  # messages not yet acknowledged
    lag_critical_above: int = 10_000
    rate_healthy_above: float = 0.90  # current ack rate / its average over the sample window
    rate_critical_below: float = 0.50
    ack_pending_healthy_below: float = 0.50  # num_ack_pending / max_ack_pending
    ack_pending_critical_above: float = 0.80
    redelivery_healthy_below: float = 0.01  # redelivered / delivered over the window
    redelivery_critical_above: float = 0.05
    connection_stale_after_s: float = 60.0  # no pull waiting and no delivery for this long: "reconnects"
    connection_lost_after_s: float = 300.0  # ... for this long: "disconnected"
    stall_after_s: float = 30.0  # pending > 0 and the delivered sequence has not moved for this long
    healthy_from: int = 80  # overall bands
    warning_from: int = 50
    sub_scores: tuple[int, int, int] = (100, 50, 0)  # healthy, warning, critical


THRESHOLDS = HealthThresholds()


class HealthInputs(msgspec.Struct, frozen=True, kw_only=True):
    """What the score is computed from (one consumer, one moment)."""

    lag: int
    ack_pending: int
    max_ack_pending: int
    processing_ratio: float | None  # None: not enough samples yet
    redelivery_ratio: float
    connection: Connection


class Component(msgspec.Struct, frozen=True):
    """One scored component, for display."""

    name: str
    weight: float
    state: State
    score: int
    value: str


class HealthScore(msgspec.Struct, frozen=True):
    """The overall score, its band and the components it came from."""

    score: int
    band: State
    components: list[Component]


def _rank(value: float, healthy: float, critical: float, higher_is_worse: bool = True) -> State:
    if higher_is_worse:
        return "healthy" if value < healthy else "critical" if value > critical else "warning"
    return "healthy" if value > healthy else "critical" if value < critical else "warning"


def band_of(value: int, t: HealthThresholds = THRESHOLDS) -> State:
    """Healthy (≥ 80), warning (50–79) or critical (< 50) for an overall score."""
    return "healthy" if value >= t.healthy_from else "warning" if value >= t.warning_from else "critical"


def score(inputs: HealthInputs, t: HealthThresholds = THRESHOLDS) -> HealthScore:
    """The weighted 0–100 health score of a consumer (pure: same inputs, same score)."""
    lag_state = _rank(inputs.lag, t.lag_healthy_below, t.lag_critical_above)
    if inputs.lag == 0 or inputs.processing_ratio is None:
        # Nothing to process (or no history yet) is not a slow consumer.
        rate_state: State = "healthy"
        rate_text = "idle" if inputs.lag == 0 else "measuring"
    else:
        rate_state = _rank(inputs.processing_ratio, t.rate_healthy_above, t.rate_critical_below, False)
        rate_text = f"{inputs.processing_ratio * 100:.0f}% of average"
    ack_ratio = inputs.ack_pending / inputs.max_ack_pending if inputs.max_ack_pending > 0 else 0.0
    ack_state = _rank(ack_ratio, t.ack_pending_healthy_below, t.ack_pending_critical_above)
    red_state = _rank(inputs.redelivery_ratio, t.redelivery_healthy_below, t.redelivery_critical_above)
    conn_state: State = {"stable": "healthy", "reconnects": "warning", "disconnected": "critical"}[inputs.connection]  # type: ignore[assignment]
    w = t.weights
    parts = [
        ("lag", w.lag, lag_state, f"{inputs.lag:,}"),
        ("processing rate", w.processing_rate, rate_state, rate_text),
        ("ack pending", w.ack_pending, ack_state, f"{ack_ratio * 100:.0f}% of max"),
        ("redelivery", w.redelivery, red_state, f"{inputs.redelivery_ratio * 100:.1f}%"),
        ("connection", w.connection, conn_state, inputs.connection),
    ]
    points = {"healthy": t.sub_scores[0], "warning": t.sub_scores[1], "critical": t.sub_scores[2]}
    components = [Component(name, weight, state, points[state], text) for name, weight, state, text in parts]
    total = round(sum(c.weight * c.score for c in components))
    return HealthScore(total, band_of(total, t), components)


def connection_state(
    num_waiting: int, push_bound: bool, idle_s: float | None, t: HealthThresholds = THRESHOLDS
) -> Connection:
    """Stable when a client is pulling, bound or recently active; else by how long it has been quiet."""
    if num_waiting > 0 or push_bound or (idle_s is not None and idle_s < t.connection_stale_after_s):
        return "stable"
    if idle_s is not None and idle_s < t.connection_lost_after_s:
        return "reconnects"
    return "disconnected"


def is_stalled(pending: int, unchanged_for_s: float, t: HealthThresholds = THRESHOLDS) -> bool:
    """Work is waiting and the delivered sequence has not advanced for ``stall_after_s``."""
    return pending > 0 and unchanged_for_s >= t.stall_after_s
