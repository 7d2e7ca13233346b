"""CoT types ↔ entity types and affiliations, and MIL-STD-2525C symbol codes (SIDC).

A CoT atom type reads ``a-{affiliation}-{dimension}-{function…}`` (``a-f-A-M-F-Q``: a
friendly military fixed-wing drone). The same letters make a 2525C SIDC:
``S{affiliation}{dimension}P{function, 6 chars}-----`` (``SFAPMFQ--------``), which is
what the console's symbols are drawn from. The table is documented in ``docs/tak.md``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal

Affiliation = Literal["friend", "hostile", "neutral", "unknown", "pending"]
AFFILIATIONS: tuple[str, ...] = Affiliation.__args__  # type: ignore[attr-defined]
DEFAULT_AFFILIATION = "friend"

# Ours → CoT/SIDC letter.
AFFILIATION_LETTER = {"friend": "f", "hostile": "h", "neutral": "n", "unknown": "u", "pending": "p"}
# CoT letter → ours (assumed friend, suspect, joker, faker and "none" fold into the five).
LETTER_AFFILIATION = {
    "f": "friend",
    "a": "friend",
    "h": "hostile",
    "s": "hostile",
    "j": "hostile",
    "k": "hostile",
    "n": "neutral",
    "u": "unknown",
    "o": "unknown",
    "p": "pending",
}

# Entity type → the CoT type after ``a-{affiliation}-`` (``None``: a map point, not an atom).
ENTITY_COT: dict[str, str] = {
    "aircraft_fixed_wing": "A-M-F-Q",
    "aircraft_multirotor": "A-M-H-Q",
    "aircraft_vtol": "A-M-F-Q",
    "aircraft_helicopter": "A-M-H",
    "aircraft_airship": "A-M-L",
    "ground_vehicle_wheeled": "G-E-V",
    "ground_vehicle_tracked": "G-E-V-A",
    "surface_vessel_usv": "S",
    "underwater_vehicle": "U",
    "sensor_platform": "G-E-S",
    "isr_sensor": "G-E-S",
    "payload_system": "G-E",
    "operator_station": "G-I",
}
# Entity types that are places, not things: sent as map points.
POINT_TYPES = {"waypoint": "b-m-p-w", "no_fly_zone": "b-m-p-s-m", "geofence": "b-m-p-s-m"}

# CoT (after the affiliation) → entity type, longest prefix first.
_COT_ENTITY: tuple[tuple[str, str], ...] = (
    ("A-M-F-Q", "aircraft_fixed_wing"),
    ("A-M-H-Q", "aircraft_multirotor"),
    ("A-C-F", "aircraft_fixed_wing"),
    ("A-M-F", "aircraft_fixed_wing"),
    ("A-C-H", "aircraft_helicopter"),
    ("A-M-H", "aircraft_helicopter"),
    ("A-C-L", "aircraft_airship"),
    ("A-M-L", "aircraft_airship"),
    ("A", "aircraft_fixed_wing"),
    ("G-E-V-A", "ground_vehicle_tracked"),
    ("G-E-V", "ground_vehicle_wheeled"),
    ("G-E-S", "sensor_platform"),
    ("G-E", "payload_system"),
    ("G-I", "operator_station"),
    ("G", "operator_station"),  # people and units with a tablet (ATAK's a-f-G-U-C)
    ("F", "operator_station"),
    ("S", "surface_vessel_usv"),
    ("U", "underwater_vehicle"),
    ("P", "sensor_platform"),
)

# a-{aff}-{dimension}[-{function letters}…]; every token one or a few letters/digits.
ATOM_RE = re.compile(r"^a-([fahsjknuop])-([APGSUFX])((?:-[A-Za-z0-9]{1,4}){0,8})$")
POINT_RE = re.compile(r"^b-m-p(?:-[A-Za-z0-9]{1,4}){0,6}$")
PING_TYPE = "t-x-c-t"
PONG_TYPE = "t-x-c-t-r"


class UnknownCotType(ValueError):
    """A CoT type the gateway does not take (not an atom ``a-…`` or map point ``b-m-p…``)."""


def cot_type(entity_type: str, affiliation: str = DEFAULT_AFFILIATION) -> str:
    """The CoT type of one of our entities, e.g. ``a-f-A-M-H-Q`` for a friendly multirotor."""
    if entity_type in POINT_TYPES:
        return POINT_TYPES[entity_type]
    letter = AFFILIATION_LETTER.get(affiliation, "u")
    return f"a-{letter}-{ENTITY_COT.get(entity_type, 'G')}"


def object_cot_type(label: str, threat_level: str) -> str:
    """CoT type of a tracked object on the ground, affiliated by its threat level."""
    letter = {"HIGH_THREAT": "h", "MODERATE_THREAT": "s", "MEDIUM_THREAT": "s"}.get(threat_level, "u")
    kind = "G-E-V" if label.lower() in ("car", "truck", "bus", "motorcycle", "vehicle") else "G"
    return f"a-{letter}-{kind}"


@lru_cache(maxsize=4096)  # a mesh repeats a handful of types; the regex and prefix walk run once each
def classify(cot: str) -> tuple[str, str]:
    """``(entity_type, affiliation)`` of an incoming CoT type; ``UnknownCotType`` when not taken."""
    atom = ATOM_RE.match(cot)
    if atom:
        rest = (atom.group(2) + atom.group(3)).upper()
        for prefix, entity_type in _COT_ENTITY:
            if rest == prefix or rest.startswith(prefix + "-"):
                return entity_type, LETTER_AFFILIATION[atom.group(1)]
        return "sensor_platform", LETTER_AFFILIATION[atom.group(1)]
    if POINT_RE.match(cot):
        return "waypoint", "unknown"
    raise UnknownCotType(f"CoT type {cot[:64]!r} is not a position report or map point")


def sidc(cot: str, affiliation: str | None = None) -> str:
    """The 2525C symbol code (15 characters) for a CoT type.

    ``affiliation`` overrides the type's letter (the registry's affiliation wins for our
    own entities). Map points get a generic ground symbol of their affiliation.
    """
    atom = ATOM_RE.match(cot)
    if atom:
        letter = atom.group(1)
        dimension = atom.group(2).upper()
        function = "".join(atom.group(3).split("-")).upper()[:6]
    else:
        letter, dimension, function = "u", "G", ""
    if affiliation in AFFILIATION_LETTER:
        letter = AFFILIATION_LETTER[affiliation]
    if dimension == "X":
        dimension = "G"
    return f"S{letter.upper()}{dimension}P{function:-<6}-----"


def entity_sidc(entity_type: str, affiliation: str, cot: str = "") -> str:
    """SIDC of an entity: from its own CoT type when it came over CoT, else from its entity type."""
    return sidc(cot or cot_type(entity_type, affiliation), affiliation)


def affiliation_of(value: object) -> str:
    """A stored affiliation, or the default for anything unset or unknown."""
    return value if isinstance(value, str) and value in AFFILIATIONS else DEFAULT_AFFILIATION
