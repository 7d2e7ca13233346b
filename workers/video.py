"""VideoWorker: JPEG frames from ``constellation.video.{entity_id}`` into the video registry.

Frames travel on core NATS (not stored): the newest frame per entity is all the
console needs. Frames that are not JPEG, too large, or for unknown entities are
dropped and copied to the dead-letter stream (at most once per second per entity, so
a misbehaving camera cannot flood it).
"""

from __future__ import annotations

import logging
import time

from nats.aio.msg import Msg

from core import topology
from services.directory import EntityDirectory
from services.video import VideoRegistry
from workers.base import Worker, WorkerContext

log = logging.getLogger("overwatch.workers.video")

MAX_FRAME = 1024 * 1024
JPEG_MAGIC = b"\xff\xd8\xff"


class VideoWorker(Worker):
    """Subscribes to ``constellation.video.*`` (core NATS)."""

    name = "video"

    def __init__(self, ctx: WorkerContext, video: VideoRegistry) -> None:
        super().__init__(ctx)
        self.video = video
        self.directory = EntityDirectory(ctx.db, ctx.hub)
        self._last_dlq: dict[str, float] = {}

    async def run(self) -> None:
        """Receive frames until stopped."""
        sub = await self.ctx.nc.subscribe(
            topology.SUBJECT_VIDEO_ALL, cb=self._on_frame, pending_msgs_limit=512, pending_bytes_limit=64 * 1024 * 1024
        )
        try:
            await self.stopping.wait()
        finally:
            try:
                await sub.unsubscribe()
            except Exception:
                log.debug("unsubscribe video failed", exc_info=True)

    async def _on_frame(self, msg: Msg) -> None:
        entity_id = msg.subject.rsplit(".", 1)[-1]
        reason = ""
        info = await self.directory.lookup(entity_id) if topology.TOKEN_RE.match(entity_id) else None
        if not topology.TOKEN_RE.match(entity_id):
            reason = f"invalid entity id in {msg.subject!r}"
        elif len(msg.data) > MAX_FRAME:
            reason = f"frame of {len(msg.data)} bytes exceeds {MAX_FRAME}"
        elif not msg.data.startswith(JPEG_MAGIC):
            reason = "frame is not a JPEG"
        elif info is None:
            reason = f"unknown entity {entity_id}"
        if reason:
            self.stats.failed += 1
            await self._reject(msg, entity_id, reason, info.org_id if info else None)
            return
        headers = msg.headers or {}
        width, height = _int(headers.get("Width")), _int(headers.get("Height"))
        annotated = headers.get("Annotated", "").lower() == "true"
        await self.video.put(entity_id, msg.data, width, height, annotated)
        self.stats.processed += 1
        self.stats.last_message_at = time.time()

    async def _reject(self, msg: Msg, entity_id: str, reason: str, org_id: str | None) -> None:
        now = time.monotonic()
        if now - self._last_dlq.get(entity_id, 0.0) < 1.0:
            return
        self._last_dlq[entity_id] = now
        try:
            # A frame's subject has no organisation token: file it under the entity's own
            # organisation so one organisation's bad frames use only its own quota.
            await self.dead_letter(msg, reason, "VIDEO", org_id)
        except Exception:  # noqa: BLE001 - losing a bad frame's copy is acceptable
            log.warning("could not dead-letter a bad frame: %s", reason)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None
