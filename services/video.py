"""Video sources per entity: latest JPEG frame from NATS, fps, live/stale, external URLs.

The VideoWorker feeds frames in; the MJPEG endpoint waits on ``next_frame``. Frames
are kept in memory only (the latest one per entity).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import msgspec

from services.embeds import EmbedService
from services.registry import RegistryService

STALE_AFTER = 3.0  # seconds without a frame before a source counts as stale


class VideoSource(msgspec.Struct, kw_only=True):
    """What the console shows about one entity's video."""

    entity_id: str
    live: bool
    fps: float
    frames: int
    last_frame_at: float
    size: int
    width: int | None = None
    height: int | None = None
    annotated: bool = False  # boxes already drawn into the frames (the overlay starts hidden)


class _Slot:
    __slots__ = ("frame", "at", "frames", "fps", "changed", "width", "height", "annotated")

    def __init__(self) -> None:
        self.frame = b""
        self.at = 0.0
        self.frames = 0
        self.fps = 0.0
        self.changed = asyncio.Condition()
        self.width: int | None = None
        self.height: int | None = None
        self.annotated = False


class VideoRegistry:
    """Latest frame per entity, with waiters for the next one."""

    def __init__(self) -> None:
        self._slots: dict[str, _Slot] = {}
        self.rejected = 0

    async def put(
        self,
        entity_id: str,
        frame: bytes,
        width: int | None = None,
        height: int | None = None,
        annotated: bool = False,
    ) -> None:
        """Store a new frame and wake its viewers."""
        slot = self._slots.get(entity_id)
        if slot is None:
            slot = self._slots[entity_id] = _Slot()
        now = time.monotonic()
        if slot.at:
            gap = max(now - slot.at, 1e-3)
            # Exponential moving average of the instantaneous rate.
            slot.fps = 1.0 / gap if slot.fps == 0 else slot.fps * 0.8 + (1.0 / gap) * 0.2
        slot.frame, slot.at, slot.width, slot.height, slot.annotated = frame, now, width, height, annotated
        slot.frames += 1
        async with slot.changed:
            slot.changed.notify_all()

    def latest(self, entity_id: str) -> tuple[bytes, float] | None:
        """``(jpeg, monotonic time)`` of the newest frame, if any."""
        slot = self._slots.get(entity_id)
        return (slot.frame, slot.at) if slot and slot.frame else None

    async def next_frame(self, entity_id: str, after: float, timeout: float) -> tuple[bytes, float] | None:
        """Wait up to ``timeout`` for a frame newer than ``after``."""
        slot = self._slots.get(entity_id)
        if slot is None:
            slot = self._slots[entity_id] = _Slot()
        if slot.at > after and slot.frame:
            return slot.frame, slot.at
        async with slot.changed:
            try:
                await asyncio.wait_for(slot.changed.wait_for(lambda: slot.at > after), timeout)
            except TimeoutError:
                return None
        return slot.frame, slot.at

    def source(self, entity_id: str) -> VideoSource | None:
        """The state of one entity's video source."""
        slot = self._slots.get(entity_id)
        if slot is None or not slot.frames:
            return None
        live = time.monotonic() - slot.at < STALE_AFTER
        return VideoSource(
            entity_id=entity_id,
            live=live,
            fps=round(slot.fps if live else 0.0, 1),
            frames=slot.frames,
            last_frame_at=time.time() - (time.monotonic() - slot.at),
            size=len(slot.frame),
            width=slot.width,
            height=slot.height,
            annotated=slot.annotated,
        )

    def sources(self) -> list[VideoSource]:
        """Every entity that ever sent a frame."""
        return [s for e in sorted(self._slots) if (s := self.source(e)) is not None]


class VideoFeeds:
    """Frames for viewers: who may watch an entity's camera, its newest frame, and a paced stream of frames."""

    def __init__(
        self, frames: VideoRegistry, registry: RegistryService, embeds: EmbedService, stopping: asyncio.Event
    ) -> None:
        self.frames = frames
        self.registry = registry
        self.embeds = embeds
        self.stopping = stopping  # set at shutdown: held streams end

    async def org_of(self, entity_id: str) -> str:
        """The registry's organisation of the entity (``NotFound`` if it is not registered)."""
        return (await self.registry.get_entity(None, entity_id)).org_id

    async def embed_public(self, entity_id: str) -> bool:
        """Whether the entity's embed (and so its camera) is public."""
        return await self.embeds.is_public("entity", entity_id)

    def latest(self, entity_id: str) -> tuple[bytes, float] | None:
        """``(jpeg, monotonic time)`` of the newest frame, if any."""
        return self.frames.latest(entity_id)

    async def follow(self, entity_id: str, max_fps: float) -> AsyncIterator[bytes]:
        """Every new frame (at most ``max_fps`` a second) until the server stops."""
        last = 0.0
        latest = self.frames.latest(entity_id)
        min_gap = 1.0 / max_fps
        while not self.stopping.is_set():
            if latest is None:
                latest = await self.frames.next_frame(entity_id, last, timeout=1.0)
                if latest is None:
                    continue
            frame, last = latest
            latest = None
            yield frame
            started = time.monotonic()
            await asyncio.sleep(min_gap)
            latest = await self.frames.next_frame(entity_id, last, timeout=max(0.0, 1.0 - (time.monotonic() - started)))
