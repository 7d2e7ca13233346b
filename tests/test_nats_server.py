"""The embedded nats-server supervisor: readiness, clear failures, restart, stop."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import nats
import pytest

from fabric.server import EmbeddedNats, NatsServerError
from tests.helpers import eventually


async def test_starts_with_jetstream_on_a_random_port(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "n", port=-1)
    url = await server.start()
    try:
        assert server.port > 0 and url.endswith(str(server.port))
        nc = await nats.connect(url)
        info = await nc.jetstream().account_info()
        assert info.limits.max_storage != 0
        await nc.close()
        assert (tmp_path / "n" / "nats-server.conf").is_file()
    finally:
        await server.stop()
    assert not server.running


async def test_port_in_use_is_one_clear_error(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    second = EmbeddedNats(tmp_path / "other", port=nats_server.port)
    with pytest.raises(NatsServerError, match="address already in use"):
        await second.start()


async def test_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "n", port=-1, binary=str(tmp_path / "no-such-nats-server"))
    with pytest.raises(NatsServerError, match="binary not found"):
        await server.start()


async def test_restarts_after_unexpected_death_on_the_same_port(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "n", port=-1)
    await server.start()
    try:
        port, pid = server.port, server.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        # ``restarts`` counts a restart once the new child is ready (its pid is set before that).
        await eventually(lambda: server.restarts >= 1, timeout=15, what="the restarted nats-server")
        assert server.restarts == 1 and server.pid != pid and server.port == port
        nc = await nats.connect(server.url)
        await nc.jetstream().account_info()
        await nc.close()
    finally:
        await server.stop()
