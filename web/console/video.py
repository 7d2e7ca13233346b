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

from collections.abc import AsyncGenerator
from typing import Any, Protocol

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.response import Stream

from core.errors import NotFound
from services.video import VideoFeeds
from web.api.params import KeyPath
from web.auth.guards import LoginRequired, deny, principal_of

Req = Request[Any, Any, Any]
BOUNDARY = "overwatchframe"
MAX_FPS = 15.0


class EntityAccess(Protocol):
    """What deciding who may see an entity's widgets needs (its organisation, its embed setting)."""

    async def org_of(self, entity_id: str) -> str:
        """The entity's organisation (``NotFound`` if it is not registered)."""
        ...

    async def embed_public(self, entity_id: str) -> bool:
        """Whether the entity's embed is public."""
        ...


async def may_view(request: Req, access: EntityAccess, entity_id: str) -> str:
    """Allow readers of the entity's organisation, or anyone for a public embed; return the org."""
    org_id = await access.org_of(entity_id)
    principal = principal_of(request)
    if principal.can_in("read", org_id) or await access.embed_public(entity_id):
        return org_id
    if not principal.authenticated:
        raise LoginRequired("sign in required")
    await deny(request, principal, f"no access to organization {org_id}", org_id)
    return org_id


async def mjpeg(feeds: VideoFeeds, entity_id: str) -> AsyncGenerator[bytes, None]:
    """Multipart JPEG parts for every new frame until the server stops."""
    async for frame in feeds.follow(entity_id, MAX_FPS):
        yield (
            f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(frame)}\r\n\r\n".encode()
            + frame
            + b"\r\n"
        )


def frame_tag(at: float) -> str:
    """The ``ETag`` of the frame received at monotonic time ``at``."""
    return f'"{int(at * 1_000_000):x}"'


def latest_frame(request: Req, feeds: VideoFeeds, entity_id: str) -> Response[bytes]:
    """The newest JPEG (200), 304 when the caller already has it, 204 before the first frame."""
    headers = {"Cache-Control": "no-store"}
    latest = feeds.latest(entity_id)
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
        self, request: Req, filename: KeyPath, video_feeds: NamedDependency[VideoFeeds]
    ) -> Stream | Response[bytes]:
        """``/video/{entity_id}.jpg`` (latest frame) or ``/video/{entity_id}.mjpg`` (held stream)."""
        entity_id, dot, suffix = filename.rpartition(".")
        if not dot or not entity_id or suffix not in ("jpg", "mjpg"):
            raise NotFound("video is /video/{entity_id}.jpg (latest frame) or /video/{entity_id}.mjpg (stream)")
        await may_view(request, video_feeds, entity_id)
        if suffix == "jpg":
            return latest_frame(request, video_feeds, entity_id)
        return Stream(
            mjpeg(video_feeds, entity_id),
            media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
            headers={"Cache-Control": "no-store"},
        )
