"""What the map page reads: markers, recent trails and the operator's tile files (PMTiles, MBTiles).

An MBTiles file is SQLite opened read-only and immutable: the operator's file is never
written and no ``-wal``/``-shm`` files appear beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Any

from core.errors import NotFound
from db.tracks import TrackPoint
from services.console.camera_map import camera_layer
from services.console.cards import EntityCard
from services.console.figures import ConsoleData
from services.tracks import TrackService

MAX_TRAIL_POINTS = 100_000


def _mbtiles(path: str) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)


def mbtiles_metadata(path: str) -> dict[str, str]:
    """The ``metadata`` table of an MBTiles file (name → value)."""
    with contextlib.closing(_mbtiles(path)) as conn:
        return {str(k): str(v) for k, v in conn.execute("SELECT name, value FROM metadata")}


def mbtiles_tile(path: str, z: int, x: int, y: int) -> bytes | None:
    """One tile (XYZ numbering; MBTiles rows count from the south, TMS)."""
    with contextlib.closing(_mbtiles(path)) as conn:
        row = conn.execute(
            "SELECT tile_data FROM tiles WHERE zoom_level = ? AND tile_column = ? AND tile_row = ?",
            (z, x, (1 << z) - 1 - y),
        ).fetchone()
    return bytes(row[0]) if row else None


class MapData:
    """Markers from the console's cards, trails from the stored tracks, and the configured tile files."""

    def __init__(self, console: ConsoleData, tracks: TrackService, pmtiles: str = "", mbtiles: str = "") -> None:
        self.console = console
        self.tracks = tracks
        self.pmtiles = pmtiles  # OVERWATCH_MAP_PMTILES ("" = none)
        self.mbtiles = mbtiles  # OVERWATCH_MAP_MBTILES ("" = none)

    def cards(self, org_ids: list[str] | None) -> list[EntityCard]:
        """Cards of every visible entity, by name."""
        return self.console.cards(org_ids)

    def card(self, entity_id: str) -> EntityCard | None:
        """One entity's card (``None`` without state)."""
        return self.console.card(entity_id)

    def camera(self, entity_id: str) -> dict[str, Any] | None:
        """A camera's footprint and placed objects (``camera_layer``), ``None`` for anything else."""
        return camera_layer(self.console.view(entity_id))

    async def trails(self, org_ids: list[str] | None, since: float, until: float) -> list[TrackPoint]:
        """Stored positions of every visible entity in the window."""
        ids = [c.entity_id for c in self.console.cards(org_ids)]
        return await self.tracks.between(ids, since, until, MAX_TRAIL_POINTS)

    def pmtiles_file(self) -> Path:
        """The PMTiles file (``NotFound`` when none is configured or it is missing)."""
        path = Path(self.pmtiles)
        if not self.pmtiles or not path.is_file():
            raise NotFound("no PMTiles file configured (OVERWATCH_MAP_PMTILES)")
        return path

    def mbtiles_file(self) -> str:
        """The MBTiles file (``NotFound`` when none is configured or it is missing)."""
        if not self.mbtiles or not Path(self.mbtiles).is_file():
            raise NotFound("no MBTiles file configured (OVERWATCH_MAP_MBTILES)")
        return self.mbtiles

    async def mbtiles_metadata(self) -> dict[str, str]:
        """The MBTiles ``metadata`` table (``NotFound`` when the file is missing or not MBTiles)."""
        path = self.mbtiles_file()
        try:
            return await asyncio.to_thread(mbtiles_metadata, path)
        except sqlite3.Error as exc:
            raise NotFound(f"OVERWATCH_MAP_MBTILES is not a readable MBTiles file: {exc}") from None

    async def mbtiles_tile(self, z: int, x: int, y: int) -> tuple[bytes | None, str]:
        """One tile (``None`` where the file has none) and the file's ``format``, lower case."""
        path = self.mbtiles_file()
        if not 0 <= z <= 24 or not 0 <= x < (1 << z) or not 0 <= y < (1 << z):
            raise NotFound(f"no tile {z}/{x}/{y}")
        try:
            data, meta = await asyncio.to_thread(lambda: (mbtiles_tile(path, z, x, y), mbtiles_metadata(path)))
        except sqlite3.Error as exc:
            raise NotFound(f"OVERWATCH_MAP_MBTILES is not a readable MBTiles file: {exc}") from None
        return data, meta.get("format", "png").lower()
