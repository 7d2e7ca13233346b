"""Commands (server → device) and their acks (device → server).

Lifecycle: ``queued → delivered → accepted → completed | failed | expired``. A command
for an offline entity stays ``queued`` until the entity is live again or it expires.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from core.contracts.common import DecodeError, validate
from core.contracts.registry import Latitude, Longitude

CommandStatus = Literal["queued", "delivered", "accepted", "completed", "failed", "expired"]
AckStatus = Literal["accepted", "completed", "failed", "rejected"]

TERMINAL: frozenset[str] = frozenset({"completed", "failed", "expired"})
# Order of progress; an ack can only move a command forward.
RANK = {"queued": 0, "delivered": 1, "accepted": 2, "completed": 3, "failed": 3, "expired": 3}

CommandName = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class GotoParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``goto``: fly or drive to a point."""

    latitude: Latitude
    longitude: Longitude
    altitude: Annotated[float, msgspec.Meta(ge=-500, le=20000)] | None = None


class SetModeParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``set_mode``: switch the autopilot mode."""

    mode: Annotated[str, msgspec.Meta(pattern=r"^[A-Z_]{2,32}$")]


class TakeoffParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``takeoff``: climb to an altitude (m, relative)."""

    altitude: Annotated[float, msgspec.Meta(gt=0, le=5000)] = 30.0


class SpeedParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``set_speed``: cruise speed in m/s."""

    speed: Annotated[float, msgspec.Meta(gt=0, le=100)]


class NoParams(msgspec.Struct, forbid_unknown_fields=True):
    """Commands that take no parameters."""


class DisarmParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``disarm``: ``force`` disarms even in flight (MAVLink's forced disarm; admins only)."""

    force: bool = False


KNOWN_COMMANDS: dict[str, type[msgspec.Struct]] = {
    "goto": GotoParams,
    "set_mode": SetModeParams,
    "takeoff": TakeoffParams,
    "set_speed": SpeedParams,
    "rtl": NoParams,
    "land": NoParams,
    "hold": NoParams,
    "resume": NoParams,
    "arm": NoParams,
    "disarm": DisarmParams,
}


def check_params(command: str, params: dict[str, Any]) -> None:
    """Validate ``params`` for a known command (unknown commands pass through untyped)."""
    schema = KNOWN_COMMANDS.get(command)
    if schema is not None:
        validate(params, schema, f"params of {command}")
    elif len(msgspec.json.encode(params)) > 16_384:
        raise DecodeError("params too large (> 16 KiB)")


class CommandMessage(msgspec.Struct, kw_only=True):
    """What a device receives on ``constellation.commands.{org_id}.{entity_id}``."""

    command_id: str
    command: str
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    org_id: str
    entity_id: str
    issued_at: str
    expires_at: str
    issued_by: str = ""


class CommandAck(msgspec.Struct, kw_only=True):
    """What a device sends on ``constellation.commands.{org_id}.{entity_id}.ack``."""

    command_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    status: AckStatus
    detail: Annotated[str, msgspec.Meta(max_length=1000)] = ""
    timestamp: str | None = None
