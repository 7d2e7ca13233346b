"""The RTSP capture source against a real (tiny, in-process) RTSP server: frames, outage, recovery."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from tests.helpers import eventually
from tests.rtsp_server import RtspServer, read_counter
from workers.detect.sources import CaptureSource, Frame, LatestFrame, open_source, parse_source

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


async def frame_after(slot: LatestFrame, counter: int, timeout: float, what: str) -> Frame:
    """The first frame whose painted server counter is at least ``counter`` (older ones are skipped)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        frame = await slot.take(min(left, 0.5))
        if frame is not None and read_counter(frame.image) >= counter:
            return frame
    raise AssertionError(f"no frame with server counter >= {counter} within {timeout}s ({what})")


async def test_rtsp_source_reconnects_after_the_stream_drops(monkeypatch: pytest.MonkeyPatch) -> None:
    # What open_source sets process-wide for rtsp://, scoped to this test instead.
    monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
    slot = LatestFrame(asyncio.get_running_loop())
    with RtspServer() as server:
        source = CaptureSource(slot, parse_source(server.url), open_timeout=2.0, stall_after=1.5, backoff=(0.2, 1.0))
        source.start()
        try:
            # Live: real decoded frames, with the server's counter advancing.
            first = await frame_after(slot, 0, timeout=15, what="first connect")
            assert first.image.shape == (240, 320, 3)
            second = await frame_after(slot, read_counter(first.image) + 1, timeout=5, what="live stream")
            assert second.seq > first.seq
            assert source.stats.connected and source.stats.reconnects == 0
            assert server.sessions == 1

            # Outage: the stream breaks, the source notices and keeps retrying while the server refuses.
            server.drop()
            sent_at_drop = server.frames_sent
            await eventually(lambda: source.stats.reconnects >= 1, timeout=5, what="the drop to be noticed")
            # It keeps trying through its backoff (0.2 s doubling to 1 s) while the server refuses.
            await eventually(lambda: server.refused >= 4, timeout=10, what="reconnect attempts while down")
            assert not source.stats.connected
            assert source.stats.reconnects >= 2, "failed reopen attempts should each count as a reconnect"
            assert server.frames_sent == sent_at_drop

            # Recovery: a second session, and frames the server sent after the outage (not buffered ones).
            server.restore()
            back = await frame_after(slot, sent_at_drop, timeout=15, what="after restore")
            assert back.image.shape == (240, 320, 3)
            assert back.seq > second.seq
            assert source.stats.connected
            assert server.sessions >= 2
            assert not source.stats.ended and not source.stats.error
        finally:
            # Stopping a live capture is prompt: a read blocks for one frame period, not a timeout.
            started = time.monotonic()
            source.stop()
            stopped_in = time.monotonic() - started
        assert source._thread is not None and not source._thread.is_alive()
        assert stopped_in < 1.0, f"stop() took {stopped_in:.2f}s"


async def test_rtsp_source_reopens_a_stalled_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    # A stream that stays connected but goes silent: only the read timeout (stall_after) can notice.
    monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
    slot = LatestFrame(asyncio.get_running_loop())
    with RtspServer() as server:
        source = CaptureSource(slot, parse_source(server.url), open_timeout=2.0, stall_after=1.0, backoff=(0.2, 1.0))
        source.start()
        try:
            await frame_after(slot, 0, timeout=15, what="first connect")
            server.stalled = True
            stalled_at = time.monotonic()
            await eventually(lambda: source.stats.reconnects >= 1, timeout=6, what="the stall to be noticed")
            assert time.monotonic() - stalled_at >= 0.9, "reconnected before the stream was silent for stall_after"
            await eventually(lambda: server.sessions >= 2, timeout=6, what="the stream to be reopened")
            assert server.refused == 0
            sent_at_resume = server.frames_sent
            server.stalled = False
            await frame_after(slot, sent_at_resume, timeout=15, what="after the stall")
            assert source.stats.connected
        finally:
            source.stop()


async def test_open_source_uses_tcp_for_rtsp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", raising=False)
    spec = parse_source("rtsp://127.0.0.1:1/live")
    source = open_source(spec, LatestFrame(asyncio.get_running_loop()), stall_after=2.0)
    assert isinstance(source, CaptureSource) and source.stall_after == 2.0
    assert os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] == "rtsp_transport;tcp"
