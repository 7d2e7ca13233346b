"""The optional mapping file: names per system id, and bindings to existing entities.

JSON or TOML (by extension), keyed by system id::

    # vehicles.toml
    [vehicles.1]
    name = "Kestrel 1"

    [vehicles.7]
    entity_id = "demo-uav-2"   # an entity that already exists: no registration
    name = "Raven 2 (MAVLink)"

A bound vehicle reports as that entity; every other new system id is registered as
``{prefix}{sysid}`` with its ``name`` (or ``MAVLink {sysid}``) and the ``entity_type``
its ``MAV_TYPE`` implies (``entity_type`` in the file overrides it).
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import msgspec

from core.contracts.registry import ENTITY_TYPES
from core.topology import TOKEN_RE


class MappingError(ValueError):
    """The mapping file cannot be used; the message says where."""


class Binding(msgspec.Struct, frozen=True, kw_only=True):
    """What the file says about one system id."""

    entity_id: str | None = None
    name: str | None = None
    entity_type: str | None = None

    @property
    def bound(self) -> bool:
        """Whether the vehicle reports as an existing entity (no self-registration)."""
        return self.entity_id is not None


def parse_mapping(doc: Any, source: str = "mapping") -> dict[int, Binding]:
    """``{sysid: Binding}`` from a decoded document (``{"vehicles": {"1": {...}}}`` or ``{"1": {...}}``)."""
    if not isinstance(doc, dict):
        raise MappingError(f"{source}: expected a table of system ids")
    table = doc.get("vehicles", doc)
    if not isinstance(table, dict):
        raise MappingError(f"{source}: 'vehicles' must be a table of system ids")
    out: dict[int, Binding] = {}
    for key, value in table.items():
        try:
            sysid = int(key)
        except (TypeError, ValueError):
            raise MappingError(f"{source}: {key!r} is not a system id") from None
        if not 1 <= sysid <= 255:
            raise MappingError(f"{source}: system id {sysid} is outside 1..255")
        try:
            binding = msgspec.convert(value, Binding)
        except msgspec.ValidationError as exc:
            raise MappingError(f"{source}: system id {sysid}: {exc}") from None
        if binding.entity_id is not None and not TOKEN_RE.match(binding.entity_id):
            raise MappingError(f"{source}: system id {sysid}: entity_id {binding.entity_id!r} is not a valid id")
        if binding.entity_type is not None and binding.entity_type not in ENTITY_TYPES:
            raise MappingError(f"{source}: system id {sysid}: unknown entity_type {binding.entity_type!r}")
        if binding.name is not None and not 1 <= len(binding.name) <= 255:
            raise MappingError(f"{source}: system id {sysid}: name must be 1..255 characters")
        out[sysid] = binding
    entity_ids = [b.entity_id for b in out.values() if b.entity_id]
    if len(entity_ids) != len(set(entity_ids)):
        raise MappingError(f"{source}: one entity is bound to several system ids")
    return out


def load_mapping(path: str | Path) -> dict[int, Binding]:
    """Read a ``.json`` or ``.toml`` mapping file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        doc = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise MappingError(f"{path}: {exc}") from None
    return parse_mapping(doc, str(path))
