"""``/video/{entity_id}.jpg`` and ``.mjpg``: the VideoWorker's latest frames.

Console pages poll ``.jpg``: one short request per frame (``ETag`` / ``If-None-Match``
answers 304 while the frame has not changed, 204 before the first frame), so a camera
tab never holds a connection and ten camera tabs fit in the browser's six connections
per host (static/js/live.js; the tabs of a browser share a frame-rate budget). ``.mjpg``
is the held ``multipart/x-mixed-replace`` stream for pages without JavaScript and other
clients: parts as new frames arrive, at most ``MAX_FPS`` per viewer, until the viewer
leaves or the server stops. Both are readable by whoever may read the entity, or by
anyone when its embed is public.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import Any

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.response import Stream

from app.runtime import Runtime
from core.errors import NotFound
from db import embeds as embeds_db
from db import registry as registry_db
from web.api.params import KeyPath
from web.auth.guards import LoginRequired, deny, principal_of

Req = Request[Any, Any, Any]
BOUNDARY = "overwatchframe"
MAX_FPS = 15.0


async def may_view(request: Req, runtime: Runtime, entity_id: str) -> str:
    """Allow readers of the entity's organisation, or anyone for a public embed; return the org."""
    row = await registry_db.get_entity(runtime.db, entity_id)
    if row is None:
        raise NotFound(f"entity {entity_id} not found")
    principal = principal_of(request)
    if principal.can_in("read", row.org_id) or await embeds_db.is_public(runtime.db, "entity", entity_id):
        return row.org_id
    if not principal.authenticated:
        raise LoginRequired("sign in required")
    await deny(request, principal, f"no access to organization {row.org_id}", row.org_id)
    return row.org_id


async def mjpeg(runtime: Runtime, entity_id: str) -> AsyncGenerator[bytes, None]:
    """Multipart JPEG parts for every new frame until the server stops."""
    video = runtime.services.video
    last = 0.0
    latest = video.latest(entity_id)
    min_gap = 1.0 / MAX_FPS
    while not runtime.shutting_down.is_set():
        if latest is None:
            latest = await video.next_frame(entity_id, last, timeout=1.0)
            if latest is None:
                continue
        frame, last = latest
        latest = None
        yield (
            f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(frame)}\r\n\r\n".encode()
            + frame
            + b"\r\n"
        )
        started = time.monotonic()
        await asyncio.sleep(min_gap)
        latest = await video.next_frame(entity_id, last, timeout=max(0.0, 1.0 - (time.monotonic() - started)))


def frame_tag(at: float) -> str:
    """The ``ETag`` of the frame received at monotonic time ``at``."""
    return f'"{int(at * 1_000_000):x}"'


def latest_frame(request: Req, runtime: Runtime, entity_id: str) -> Response[bytes]:
    """The newest JPEG (200), 304 when the caller already has it, 204 before the first frame."""
    headers = {"Cache-Control": "no-store"}
    latest = runtime.services.video.latest(entity_id)
    if latest is None:
        return Response(b"", status_code=204, headers=headers)
    frame, at = latest
    headers["ETag"] = tag = frame_tag(at)
    if request.headers.get("if-none-match") == tag:
        return Response(b"", status_code=304, headers=headers)
    return Response(frame, media_type="image/jpeg", headers=headers)


class VideoController(Controller):
    """The latest-frame and MJPEG endpoints."""

    include_in_schema = False
    opt = {"public": True}  # access is decided per entity (public embeds)

    @get("/video/{filename:str}")
    async def video(
        self, request: Req, filename: KeyPath, runtime: NamedDependency[Runtime]
    ) -> Stream | Response[bytes]:
        """``/video/{entity_id}.jpg`` (latest frame) or ``/video/{entity_id}.mjpg`` (held stream)."""
        entity_id, dot, suffix = filename.rpartition(".")
        if not dot or not entity_id or suffix not in ("jpg", "mjpg"):
            raise NotFound("video is /video/{entity_id}.jpg (latest frame) or /video/{entity_id}.mjpg (stream)")
        await may_view(request, runtime, entity_id)
        if suffix == "jpg":
            return latest_frame(request, runtime, entity_id)
        return Stream(
            mjpeg(runtime, entity_id),
            media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
            headers={"Cache-Control": "no-store"},
        )
