"""``overwatch serve`` as a user runs it: readiness, clean exit, no orphans, persistence, bad config."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from fabric.server import EmbeddedNats
from tests.conftest import OVERWATCH, QUIET_DETECTOR, ServerProcess, free_port
from tests.helpers import wait_until

pytestmark = pytest.mark.slow


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False


def _open_sse(url: str, key: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.sendall(
        f"GET /events/overview HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n"
        f"Authorization: Bearer {key}\r\n\r\n".encode()
    )
    first = sock.recv(4096)
    assert b"200 OK" in first and b"text/event-stream" in first
    return sock


def test_ready_fast_then_ctrl_c_exits_zero_with_a_browser_connected(
    server_process: Callable[..., ServerProcess],
) -> None:
    server = server_process(args=["--demo"], env=QUIET_DETECTOR)
    waited = server.wait_ready(timeout=30)
    # Fast means little start-up work: the CPU the server spent until ready, which the rest of a full
    # suite on two cores does not inflate the way it does wall time (bench/startup.py measures that quietly).
    assert server.proc is not None
    cpu = _cpu_seconds(server.proc.pid)
    print(f"ready after {waited:.1f} s wall, {cpu:.1f} s of server CPU")
    assert cpu < 6.0, f"start-up took {cpu:.1f} s of CPU ({waited:.1f} s wall)"
    children = server.nats_child_pids()
    assert len(children) == 1
    sse = _open_sse(server.url, server.api_key("viewer"))
    started = time.monotonic()
    code = server.stop(signal.SIGINT)
    took = time.monotonic() - started
    sse.close()
    assert code == 0, server.output()
    assert took < 5, f"exit took {took:.1f}s"
    wait_until(lambda: not any(_alive(pid) for pid in children), timeout=0.2, what="nats-server gone with the server")


def test_sigterm_exits_zero(server_process: Callable[..., ServerProcess]) -> None:
    server = server_process()
    server.wait_ready()
    children = server.nats_child_pids()
    assert server.stop(signal.SIGTERM) == 0
    wait_until(lambda: not any(_alive(pid) for pid in children), timeout=0.2, what="nats-server gone with the server")


def test_kill_9_of_the_parent_leaves_no_nats_server(server_process: Callable[..., ServerProcess]) -> None:
    server = server_process()
    server.wait_ready()
    children = server.nats_child_pids()
    assert children
    server.stop(signal.SIGKILL)
    wait_until(lambda: not any(_alive(pid) for pid in children), timeout=5, what="PDEATHSIG to stop nats-server")


def test_restart_keeps_jetstream_and_sqlite(server_process: Callable[..., ServerProcess], tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = server_process(args=["--demo"], data_dir=data, env=QUIET_DETECTOR)
    first.wait_ready()
    assert first.stop() == 0
    db = data / "overwatch.db"
    with sqlite3.connect(db) as conn:
        entities = {r[0] for r in conn.execute("SELECT entity_id FROM entities")}
    # The five demo entities, and the demo MAVLink vehicle once its first heartbeat registered it.
    assert {"demo-uav-1", "demo-cam-1"} <= entities and len(entities - {"mav-1"}) == 5, entities

    second = server_process(data_dir=data)
    second.wait_ready()
    ready = httpx.get(f"{second.url}/health/ready").json()
    assert ready["checks"]["jetstream"]["detail"].startswith("8 streams")
    assert second.stop() == 0
    assert "created stream" not in second.output(), "streams were recreated on restart"
    # Nothing changed on restart (no "; changed: …"): streams, buckets and durable consumers.
    assert "topology ready (13 objects)" in second.output()

    # A node with an empty database rebuilds the registry from NATS.
    db.unlink()
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    third = server_process(data_dir=data)
    third.wait_ready()
    assert third.stop() == 0
    with sqlite3.connect(db) as conn:
        rebuilt = {r[0] for r in conn.execute("SELECT entity_id FROM entities")}
        assert rebuilt >= entities, f"registry rebuilt from NATS lacks {entities - rebuilt}"
        assert conn.execute("SELECT name FROM organizations").fetchone()[0] == "Demo Task Force"


async def test_external_nats_url_starts_no_child(
    server_process: Callable[..., ServerProcess], nats_server: EmbeddedNats
) -> None:
    server = server_process(env={"NATS_URL": nats_server.url})
    await server.ready()
    assert server.nats_child_pids() == []
    async with httpx.AsyncClient() as http:
        body = (await http.get(f"{server.url}/health/ready")).json()
    assert "nats_server" not in body["checks"]
    assert body["checks"]["nats"]["detail"].endswith(str(nats_server.port))
    assert await asyncio.to_thread(server.stop) == 0


def _run_bad(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base: dict[str, Any] = {
        **os.environ,
        "OVERWATCH_DATA_DIR": str(tmp_path / "d"),
        "PORT": str(free_port()),
        "NATS_PORT": "-1",
        "HOST": "127.0.0.1",
        "OVERWATCH_STARTUP_TIMEOUT": "2",
    }
    base.update(env)
    return subprocess.run([OVERWATCH, "serve"], env=base, capture_output=True, text=True, timeout=30, cwd=tmp_path)


def _assert_one_clear_error(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("overwatch:")]
    assert len(errors) == 1, result.stderr
    assert needle in errors[0], errors[0]


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _run_bad(tmp_path, {"PORT": str(port)})
    _assert_one_clear_error(result, "address already in use")


def test_unwritable_data_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = _run_bad(tmp_path, {"OVERWATCH_DATA_DIR": str(blocker / "data")})
    _assert_one_clear_error(result, "not writable")


def test_unreachable_nats_url(tmp_path: Path) -> None:
    result = _run_bad(tmp_path, {"NATS_URL": f"nats://127.0.0.1:{free_port()}"})
    _assert_one_clear_error(result, "cannot connect to NATS")


def test_missing_nats_server_binary(tmp_path: Path) -> None:
    result = _run_bad(tmp_path, {"NATS_SERVER_BIN": str(tmp_path / "nope")})
    _assert_one_clear_error(result, "nats-server binary not found")


def test_bad_setting_value(tmp_path: Path) -> None:
    result = _run_bad(tmp_path, {"PORT": "eighty"})
    _assert_one_clear_error(result, "PORT")


def test_embedded_nats_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = _run_bad(tmp_path, {"NATS_PORT": str(busy.getsockname()[1])})
    _assert_one_clear_error(result, "nats-server failed to start")


def test_version_and_placeholder_commands() -> None:
    out = subprocess.run([OVERWATCH, "version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.startswith("overwatch ")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").split(")")[-1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
