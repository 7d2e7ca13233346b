"""Stored detection events (written by the events worker), read per entity."""

from __future__ import annotations

from db import detections as detections_db
from db.database import Database
from db.detections import DetectionRow
from services.registry import entity_in


class DetectionService:
    """Reads an entity's detection history, newest first."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def recent(self, entity_id: str, limit: int) -> list[DetectionRow]:
        """The latest events of an entity (no organisation check: the caller has done it)."""
        return await detections_db.list_detections(self.db, entity_id, limit)

    async def page(self, org_id: str, entity_id: str, limit: int, offset: int) -> tuple[list[DetectionRow], int]:
        """A page of an entity of ``org_id``'s events and their total; ``NotFound`` if it is not there."""
        await entity_in(self.db, org_id, entity_id)
        rows = await detections_db.list_detections(self.db, entity_id, limit, offset)
        return rows, await detections_db.count_detections(self.db, entity_id)
