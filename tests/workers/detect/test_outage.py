"""NATS goes away for 10 s mid-detection: nothing crashes, nothing is lost, nothing is doubled."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest

from core import topology
from fabric.server import EmbeddedNats
from tests.helpers import eventually, stream_messages
from tests.workers.detect.test_worker import CAMERA, detect_settings
from workers.detect.worker import DetectionWorker

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


async def stored_events(url: str) -> list[tuple[str, dict[str, Any]]]:
    """(Nats-Msg-Id, body) of the camera's events in the events stream."""
    nc = await nats.connect(url)
    try:
        msgs = await stream_messages(nc.jetstream(), topology.STREAM_EVENTS)
    finally:
        await nc.close()
    subject = topology.detection_subject("org1", CAMERA)
    return [
        ((m.headers or {}).get("Nats-Msg-Id", ""), msgspec.json.decode(m.data or b"{}"))
        for m in msgs
        if m.subject == subject
    ]


OUTAGE_S = 10.0


async def test_ten_second_outage_buffers_and_delivers_once(tmp_path: Path) -> None:
    store = tmp_path / "nats"
    first = EmbeddedNats(store, port=-1)
    url = await first.start()
    nc = await nats.connect(url)
    await topology.ensure_topology(nc.jetstream(), None)
    await nc.close()

    worker = DetectionWorker(detect_settings(url, lost_after=1.0))
    stopping = asyncio.Event()
    task = asyncio.create_task(worker.run(stopping))
    second: EmbeddedNats | None = None
    try:
        await eventually(lambda: _count(stored_events(url), 5), timeout=20, what="events before the outage")
        await first.stop()
        down_at = time.time()
        # The outage's length is the scenario (ten seconds of NATS away), watched throughout: the worker must
        # be running at every check, not only at the end.
        await eventually(lambda: task.done() or time.time() - down_at >= OUTAGE_S, timeout=OUTAGE_S + 10, interval=0.2)
        assert not task.done(), "worker died while NATS was down"
        assert worker.sender is not None and worker.sender.pending > 0, "nothing was buffered during the outage"
        buffered = worker.sender.pending
        second = EmbeddedNats(store, port=first.port)
        await second.start()
        up_at = time.time()
        await eventually(lambda: worker.sender is not None and worker.sender.pending == 0, timeout=30, what="flush")
    finally:
        stopping.set()
        code = await asyncio.wait_for(task, 20)
        if second is None:
            await first.stop()
    try:
        assert code == 0
        events = await stored_events(url)
    finally:
        await second.stop()

    ids = [m for m, _ in events]
    assert len(ids) == len(set(ids)), "an event was stored twice"
    assert worker.sender.published == len(events), (worker.sender.published, len(events))
    assert worker.sender.dropped == 0
    # Every track's events are all there: per-track sequence numbers run 1..n without gaps.
    seqs: dict[str, list[int]] = defaultdict(list)
    for msg_id, body in events:
        if body["event_type"] in ("detection", "lost", "reappeared"):  # an object's events share its sequence
            track, seq = msg_id.rsplit(":", 2)[1:]
            seqs[track].append(int(seq))
    for track, numbers in seqs.items():
        assert sorted(numbers) == list(range(1, len(numbers) + 1)), (track, numbers)
    # Events created while the server was down arrived after it came back.
    during = [b for _, b in events if down_at + 0.5 < _epoch(b["timestamp"]) < up_at - 0.5]
    assert len(during) >= min(buffered, 1)
    assert worker.metrics.nats_reconnects >= 1
    assert events[-1][1]["event_type"] == "shutdown"


async def _count(events: Any, n: int) -> bool:
    return len(await events) >= n


def _epoch(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
