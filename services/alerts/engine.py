"""The rule state machine, free of I/O so it can be tested with an explicit clock.

For each (rule, subject) a ``Track`` remembers since when the condition has held,
whether it is firing and when it last fired. ``step`` returns a ``Transition`` when
the rule should fire (held for ``duration_s``, not snoozed, ``cooldown_s`` since the
last firing) or resolve (stopped holding while firing). A missing value never fires
and resolves a firing rule: no data is not evidence of a problem.

Two options serve the default rules: ``margin`` (hysteresis: a firing rule resolves only
once the value is ``margin`` past the threshold, so a battery hovering at the threshold
does not flap) and ``keep_missing`` (a firing rule stays firing while the value is missing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from services.alerts.model import KINDS, RuleSpec


@dataclass
class Track:
    """Evaluation state of one rule for one subject."""

    since: float | None = None  # when the condition started holding (epoch seconds)
    firing: bool = False
    last_fired: float | None = None
    value: float | None = None
    entity_id: str = ""  # the entity the subject belongs to ("" for system subjects)
    shown: tuple[str, ...] | None = None  # what the firing's alert last showed (default rules)


@dataclass(frozen=True)
class Transition:
    """``fire`` or ``resolve`` for one subject, with the value that caused it."""

    action: Literal["fire", "resolve"]
    subject: str
    value: float | None


def holds(rule: RuleSpec, value: float | None) -> bool:
    """Whether ``value`` breaches the rule's threshold."""
    return value is not None and KINDS[rule.kind].holds(value, rule.threshold)


def recovered(rule: RuleSpec, value: float, margin: float) -> bool:
    """Whether ``value`` is at least ``margin`` on the good side of the threshold."""
    if KINDS[rule.kind].op == "<":
        return value >= rule.threshold + margin
    return value <= rule.threshold - margin


def step(
    rule: RuleSpec,
    track: Track,
    subject: str,
    value: float | None,
    now: float,
    snoozed: bool,
    *,
    margin: float = 0.0,
    keep_missing: bool = False,
) -> Transition | None:
    """Advance one track to ``now`` with the latest ``value``."""
    if value is None and keep_missing and track.firing:
        return None
    track.value = value
    if not holds(rule, value):
        track.since = None
        if track.firing and margin and value is not None and not recovered(rule, value, margin):
            return None  # within the hysteresis band: still firing
        if track.firing:
            track.firing = False
            return Transition("resolve", subject, value)
        return None
    if track.since is None:
        track.since = now
    if track.firing or snoozed or now - track.since < rule.duration_s:
        return None
    if track.last_fired is not None and now - track.last_fired < rule.cooldown_s:
        return None
    track.firing = True
    track.last_fired = now
    return Transition("fire", subject, value)


def stop(track: Track, subject: str) -> Transition | None:
    """Resolve a firing track whose rule was disabled or deleted, or whose subject went away."""
    track.since = None
    if track.firing:
        track.firing = False
        return Transition("resolve", subject, None)
    return None
