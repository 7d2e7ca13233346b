"""Every topic of the in-process hub (``services.hub``), in one place.

A hub ``Update`` names what changed by topic and key; publishers and the pages that
follow them must agree on the topic, so it is a member of this enum, never a bare
string. ``StrEnum`` members compare equal to their string values.
"""

from __future__ import annotations

from enum import StrEnum


class Topic(StrEnum):
    """What kind of thing changed; the update's key says which one."""

    STATE = "state"  # an entity's EntityState view (key: entity id)
    REGISTRY = "registry"  # a registry projection record (key: bucket key, e.g. ``entity.<id>``)
    ALERTS = "alerts"  # an alert row (key: alert id)
    RULES = "rules"  # a rule definition (``rule:<id>``) or a firing/resolution (``event:<id>``)
    TOASTS = "toasts"  # a rule notification to show once (key: event id)
    COMMANDS = "commands"  # a command's lifecycle (key: entity id)
    DETECTIONS = "detections"  # a detection stored for an entity (key: entity id)
    METRICS = "metrics"  # a metrics sample was taken
    SYSTEM = "system"  # NATS connection state and other process-wide status
