"""Which organisation a subject belongs to, derived from ``core.topology``'s subject builders.

The layouts are not retyped here: each builder is called once with marker tokens and
the position of the ``org_id`` marker is read back, so a change in ``topology`` moves
the org token here too. Subjects matching no layout (DLQ, video, KV, foreign) have no
organisation and are hidden from callers who do not see every organisation.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from core import topology

_ORG = "ORGMARK"
_ENT = "ENTMARK"
_KIND = "KINDMARK"


def _layouts() -> list[tuple[tuple[str, ...], int, int]]:
    """(literal leading tokens, index of the org token, token count) per subject layout."""
    samples: list[str] = [
        topology.telemetry_subject(_ORG, _ENT),
        topology.event_subject(_KIND, _ORG, _ENT),
        topology.command_subject(_ORG, _ENT),
        topology.command_ack_subject(_ORG, _ENT),
    ]
    samples += [topology.entity_lifecycle_subject(_ORG, k) for k in topology.ENTITY_LIFECYCLE]
    out: set[tuple[tuple[str, ...], int, int]] = set()
    for sample in samples:
        tokens = sample.split(".")
        first_marker = min(i for i, t in enumerate(tokens) if t in (_ORG, _ENT, _KIND))
        out.add((tuple(tokens[:first_marker]), tokens.index(_ORG), len(tokens)))
    return sorted(out)


_LAYOUTS = _layouts()


@lru_cache(maxsize=65_536)
def org_of_subject(subject: str) -> str | None:
    """The ``org_id`` token of a console subject, or ``None`` when it carries none."""
    tokens = subject.split(".")
    for fixed, org_at, count in _LAYOUTS:
        if len(tokens) == count and tuple(tokens[: len(fixed)]) == fixed:
            org = tokens[org_at]
            return org if topology.TOKEN_RE.match(org) else None
    return None


def visibility(org_ids: frozenset[str] | None) -> Callable[[str], bool]:
    """A predicate: may a caller seeing ``org_ids`` (``None`` = all) see a subject."""
    if org_ids is None:
        return lambda _subject: True

    def sees(subject: str) -> bool:
        org = org_of_subject(subject)
        return org is not None and org in org_ids

    return sees
