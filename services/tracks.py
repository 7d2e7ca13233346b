"""Stored tracks: the positions the telemetry worker keeps, read for sparklines, trails and exports."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec

from core.errors import Invalid
from db import tracks as tracks_db
from db.database import Database
from db.tracks import TrackPoint
from services.console.cards import EntityCard, entity_card
from services.console.figures import ConsoleData
from services.registry import entity_in
from services.state_view import entity_view

MAX_WINDOW = 7 * 24 * 3600.0  # seconds an export window may span


def window(minutes: float | None, start: str | None, end: str | None, now: float | None = None) -> tuple[float, float]:
    """``(start, end)`` epoch seconds of a requested window; ``Invalid`` (400) when it makes no sense.

    ``minutes`` back from now (default 60), or ``start``/``end`` (ISO 8601), at most seven days.
    """
    now = time.time() if now is None else now

    def parse(value: str, what: str) -> float:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise Invalid(f"{what} {value!r} is not an ISO 8601 time") from None
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()

    if start is None and end is None:
        return now - (minutes or 60.0) * 60, now
    if minutes is not None:
        raise Invalid("give either minutes or start/end, not both")
    t1 = parse(end, "end") if end else now
    t0 = parse(start, "start") if start else t1 - 3600.0
    if t0 >= t1:
        raise Invalid("start must be before end")
    if t1 - t0 > MAX_WINDOW:
        raise Invalid("the window may span at most 7 days")
    return t0, t1


class Picture(msgspec.Struct, frozen=True):
    """Entities where they are now and their stored tracks over a window (epoch seconds)."""

    cards: list[EntityCard]
    points: list[TrackPoint]
    start: float
    end: float


class TrackService:
    """Reads stored positions; every read scoped to visible entities or to one checked entity."""

    def __init__(self, db: Database, console: ConsoleData) -> None:
        self.db = db
        self.console = console

    async def history(self, entity_id: str, since: float, limit: int = 2000) -> list[TrackPoint]:
        """An entity's positions since ``since`` (epoch seconds), oldest first (no organisation check)."""
        return await tracks_db.recent_track(self.db, entity_id, since, limit)

    async def recent(self, org_id: str, entity_id: str, since: float) -> list[TrackPoint]:
        """The positions of an entity of ``org_id`` since ``since``; ``NotFound`` if it is not there."""
        await entity_in(self.db, org_id, entity_id)
        return await tracks_db.recent_track(self.db, entity_id, since)

    async def between(self, entity_ids: Sequence[str], t0: float, t1: float, limit: int) -> list[TrackPoint]:
        """Positions of ``entity_ids`` between ``t0`` and ``t1``."""
        return await tracks_db.tracks_between(self.db, t0, t1, list(entity_ids), limit=limit)

    async def picture(
        self, org_ids: list[str] | None, minutes: float | None, start: str | None, end: str | None, limit: int
    ) -> Picture:
        """Every visible entity where it is now, and the tracks of those entities in the window."""
        t0, t1 = window(minutes, start, end)
        cards = self.console.cards(org_ids)
        return Picture(cards, await self.between([c.entity_id for c in cards], t0, t1, limit), t0, t1)

    async def of_entity(
        self, org_id: str, entity_id: str, minutes: float | None, start: str | None, end: str | None, limit: int
    ) -> Picture:
        """One entity of ``org_id`` (its card, from the registry until it has state) and its track."""
        rec = (await entity_in(self.db, org_id, entity_id)).to_record()
        t0, t1 = window(minutes, start, end)
        card = self.console.card(entity_id) or entity_card(
            entity_view(
                rec.entity_id,
                rec.org_id,
                {"name": rec.name, "entity_type": rec.entity_type, "affiliation": rec.affiliation},
            )
        )
        return Picture([card], await self.between([entity_id], t0, t1, limit), t0, t1)
