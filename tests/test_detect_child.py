"""The demo's detection worker child: restarted when it dies, not on a configuration error, stopped cleanly."""

from __future__ import annotations

import asyncio
import os
import signal

import nats
import pytest
from nats.aio.msg import Msg

from app.detect_child import DetectChild
from core import topology
from fabric.server import EmbeddedNats
from tests.helpers import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


def env_for(url: str, **extra: str) -> dict[str, str]:
    return {
        "CONSTELLATION_ORG_ID": "org1",
        "CONSTELLATION_ENTITY_ID": "cam-1",
        "NATS_URL": url,
        "DETECT_SOURCE": "synthetic",
        "ENABLE_FRAME_STREAMING": "false",
        **extra,
    }


async def test_child_is_restarted_after_it_dies_and_stopped_on_shutdown(nats_server: EmbeddedNats) -> None:
    nc = await nats.connect(nats_server.url)
    await topology.ensure_topology(nc.jetstream(), None)
    boots: list[bytes] = []

    async def on_event(msg: Msg) -> None:
        if b'"bootsequence"' in msg.data:
            boots.append(msg.data)

    await nc.subscribe(topology.detection_subject("org1", "cam-1"), cb=on_event)
    child = DetectChild(env_for(nats_server.url))
    stopping = asyncio.Event()
    task = asyncio.create_task(child.run(stopping))
    try:
        await eventually(lambda: len(boots) >= 1, timeout=30, what="first bootsequence")
        assert child.proc is not None
        first = child.proc.pid
        os.kill(first, signal.SIGKILL)  # an unexpected death
        await eventually(lambda: len(boots) >= 2, timeout=30, what="bootsequence after the restart")
        assert child.starts == 2 and child.proc.pid != first and child.last_exit == -signal.SIGKILL
    finally:
        stopping.set()
        await asyncio.wait_for(task, 10)
        await nc.close()
    assert not child.running
    assert child.proc is not None and child.proc.returncode == 0, "SIGTERM should end the worker cleanly"


async def test_configuration_error_is_not_restarted(nats_server: EmbeddedNats) -> None:
    child = DetectChild(env_for(nats_server.url, CONSTELLATION_ENTITY_ID="not valid!"))
    stopping = asyncio.Event()
    await asyncio.wait_for(child.run(stopping), 30)  # returns by itself
    assert child.starts == 1 and child.last_exit == 78
