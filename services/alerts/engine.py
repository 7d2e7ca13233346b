"""The rule state machine, free of I/O so it can be tested with an explicit clock.

For each (rule, subject) a ``Track`` remembers since when the condition has held,
whether it is firing and when it last fired. ``step`` returns a ``Transition`` when
the rule should fire (held for ``duration_s``, not snoozed, ``cooldown_s`` since the
last firing) or resolve (stopped holding while firing). A missing value never fires
and resolves a firing rule: no data is not evidence of a problem.
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


@dataclass(frozen=True)
class Transition:
    """``fire`` or ``resolve`` for one subject, with the value that caused it."""

    action: Literal["fire", "resolve"]
    subject: str
    value: float | None


def holds(rule: RuleSpec, value: float | None) -> bool:
    """Whether ``value`` breaches the rule's threshold."""
    return value is not None and KINDS[rule.kind].holds(value, rule.threshold)


def step(
    rule: RuleSpec, track: Track, subject: str, value: float | None, now: float, snoozed: bool
) -> Transition | None:
    """Advance one track to ``now`` with the latest ``value``."""
    track.value = value
    if not holds(rule, value):
        track.since = None
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
