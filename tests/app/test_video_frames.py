"""``/video/{id}.jpg`` (the latest frame, polled by console pages) and ``/video/{id}.mjpg`` (held stream)."""

from __future__ import annotations

import cv2
import httpx
import numpy as np

from app.runtime import Runtime
from core import topology
from db import embeds as embeds_db
from tests.conftest import LiveServer
from tests.helpers import eventually, seed


def _jpeg(level: int) -> bytes:
    ok, jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), level, dtype=np.uint8))
    assert ok
    return bytes(jpeg.tobytes())


async def _frame(runtime: Runtime, entity_id: str, jpeg: bytes) -> None:
    """Publish a frame over NATS and wait until the VideoWorker has it."""
    assert runtime.nc is not None
    await runtime.nc.publish(topology.video_subject(entity_id), jpeg)
    await eventually(lambda: (runtime.services.video.latest(entity_id) or (b"",))[0] == jpeg, what="frame")


async def test_latest_frame_with_etag_304_and_204_before_the_first(runtime: Runtime, client: httpx.AsyncClient) -> None:
    (cam,) = await seed(runtime, entities=1, prefix="cam", entity_type="isr_sensor")
    empty = await client.get(f"/video/{cam}.jpg")
    assert empty.status_code == 204 and empty.content == b""
    first, second = _jpeg(40), _jpeg(200)
    await _frame(runtime, cam, first)
    got = await client.get(f"/video/{cam}.jpg")
    assert got.status_code == 200 and got.content == first
    assert got.headers["content-type"] == "image/jpeg" and got.headers["cache-control"] == "no-store"
    tag = got.headers["etag"]
    same = await client.get(f"/video/{cam}.jpg", headers={"If-None-Match": tag})
    assert same.status_code == 304 and same.content == b""
    await _frame(runtime, cam, second)
    newer = await client.get(f"/video/{cam}.jpg", headers={"If-None-Match": tag})
    assert newer.status_code == 200 and newer.content == second and newer.headers["etag"] != tag


async def test_frames_follow_the_entity_permissions(
    runtime: Runtime, anon_client: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    (mine,) = await seed(runtime, "org1", entities=1, prefix="mine", entity_type="isr_sensor")
    (theirs,) = await seed(runtime, "org2", entities=1, prefix="theirs", entity_type="isr_sensor")
    for entity_id in (mine, theirs):
        await _frame(runtime, entity_id, _jpeg(90))
    viewer = await runtime.services.apikeys.create("tests", "viewer", ["read"], "org1")
    headers = {"Authorization": f"Bearer {viewer.key}"}
    assert (await anon_client.get(f"/video/{mine}.jpg")).status_code == 401
    assert (await anon_client.get(f"/video/{mine}.jpg", headers=headers)).status_code == 200
    assert (await anon_client.get(f"/video/{theirs}.jpg", headers=headers)).status_code == 403
    await embeds_db.set_public(runtime.db, "entity", theirs, True, "tests", "2026-01-01T00:00:00Z")
    assert (await anon_client.get(f"/video/{theirs}.jpg")).status_code == 200  # a public embed's camera
    for bad in ("/video/nope.jpg", f"/video/{mine}.png", f"/video/{mine}", "/video/.jpg"):
        assert (await client.get(bad)).status_code == 404, bad


async def test_mjpeg_stream_still_serves_pages_without_javascript(runtime: Runtime, live_server: LiveServer) -> None:
    (cam,) = await seed(runtime, entities=1, prefix="cam", entity_type="isr_sensor")
    key = await runtime.services.apikeys.create("tests", "admin", ["read"], None)
    jpeg = _jpeg(120)
    await _frame(runtime, cam, jpeg)
    async with (
        httpx.AsyncClient(base_url=live_server.url, timeout=10) as http,
        http.stream("GET", f"/video/{cam}.mjpg", headers={"Authorization": f"Bearer {key.key}"}) as resp,
    ):
        assert resp.headers["content-type"].startswith("multipart/x-mixed-replace")
        received = b""
        async for chunk in resp.aiter_bytes():
            received += chunk
            if jpeg in received:
                break
    assert b"Content-Type: image/jpeg" in received


async def test_camera_pages_poll_frames_and_keep_mjpeg_for_pages_without_javascript(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    (cam,) = await seed(runtime, entities=1, prefix="cam", entity_type="isr_sensor")
    await _frame(runtime, cam, _jpeg(60))
    await embeds_db.set_public(runtime.db, "entity", cam, True, "tests", "2026-01-01T00:00:00Z")
    for page in (f"/entities/{cam}", f"/embed/entity/{cam}"):
        html = (await client.get(page)).text
        assert f'data-frame-src="/video/{cam}.jpg"' in html, page
        assert f'<noscript><img class="video-img" src="/video/{cam}.mjpg"' in html, page
        assert html.count(".mjpg") == 1, page  # no held stream outside <noscript>
