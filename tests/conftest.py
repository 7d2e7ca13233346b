"""Test harness: a real nats-server per test, real SQLite files, the app in-process or on a port.

No mocks: every fixture starts the real thing on loopback with random ports and
temporary directories, and tears it down again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import nats
import pytest
import uvicorn
from nats.aio.client import Client as NATS

from app.bootstrap import worker_factories
from app.main import create_app
from app.runtime import Runtime
from app.server import EmbeddedServer
from core.clock import SYSTEM_CLOCK, Clock
from core.settings import Settings
from fabric.server import EmbeddedNats
from services.auth.apikeys import NewKey
from services.nats_auth import inbox_prefix
from tests.helpers import eventually, wait_until

REPO = Path(__file__).resolve().parent.parent
OVERWATCH = str(Path(sys.executable).parent / "overwatch")


# Tests that share a fixture too costly to start on every xdist worker: each prefix is handed to one worker whole.
XDIST_GROUPS = ("tests/contract/",)  # the demo server of the PRD contract tests


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On an xdist worker: tests marked ``slow`` first (every worker sorts alike, so the collections still agree),
    so the long ones start early and the two workers finish together instead of one waiting on a late slow test."""
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` as intended: one test at a time, except the ``XDIST_GROUPS``, each sent whole.

    (pytest-xdist 3.8 groups by rewriting node ids, which pytest 9 no longer lets it do: its own loadgroup hands
    grouped tests out one by one.)"""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return next((prefix for prefix in XDIST_GROUPS if nodeid.startswith(prefix)), nodeid)

    return GroupScheduling(config, log)


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[EmbeddedNats]:
    """A real ``nats-server -js`` on a random port with a temporary store."""
    server = EmbeddedNats(tmp_path / "nats-test", port=-1)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(timeout=0)  # a throw-away store: no graceful JetStream shutdown (~0.1 s) needed


@pytest.fixture
def settings(tmp_path: Path, nats_server: EmbeddedNats) -> Settings:
    """Settings pointing at the test NATS server and a temporary data dir."""
    return Settings(
        data_dir=str(tmp_path / "data"),
        nats_url=nats_server.url,
        port=0,
        host="127.0.0.1",
        admin_password="admin-password-for-tests",
    )


async def stop_quickly(rt: Runtime) -> None:
    """``Runtime.stop`` without the grace period a production shutdown gives workers to finish a batch (up to
    0.3 s, spent by every worker waiting in a fetch): at the end of a test nothing is left to finish."""
    await rt.workers.stop(timeout=0)
    await rt.stop()


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """A started runtime (SQLite, NATS connection, topology, workers)."""
    rt = Runtime(settings, worker_factories())
    await rt.start()
    try:
        yield rt
    finally:
        await stop_quickly(rt)


@pytest.fixture
async def make_runtime(settings: Settings) -> AsyncIterator[Any]:
    """Factory for extra runtimes with setting overrides (each its own data dir unless given), optionally on a
    ``ManualClock`` (``clock=``)."""
    started: list[Runtime] = []
    counter = [0]

    async def make(clock: Clock = SYSTEM_CLOCK, **overrides: Any) -> Runtime:
        counter[0] += 1
        overrides.setdefault("data_dir", f"{settings.data_dir}-{counter[0]}")
        rt = Runtime(msgspec.structs.replace(settings, **overrides), worker_factories(), clock=clock)
        await rt.start()
        started.append(rt)
        return rt

    yield make
    for rt in reversed(started):
        await stop_quickly(rt)


@pytest.fixture
def app(runtime: Runtime) -> Any:
    """The test's one Litestar app over ``runtime`` (building one takes ~0.3 s: every client of a test shares it)."""
    return create_app(runtime)


def api_client(app: Any, key: str) -> httpx.AsyncClient:
    """An in-process HTTP client on ``app`` with API key ``key`` (close it, or use ``async with``)."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers={"Authorization": f"Bearer {key}"}
    )


async def key_client(rt: Runtime, scopes: list[str], org: str | None, app: Any = None) -> httpx.AsyncClient:
    """An in-process client with a new API key of ``scopes`` over ``org`` (every organisation when None)."""
    key = await rt.services.apikeys.create("tests", f"key-{'-'.join(scopes)}-{org}", scopes, org)
    return api_client(app if app is not None else create_app(rt), key.key)


@pytest.fixture
async def viewer(runtime: Runtime, app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Read-only over every organisation."""
    async with await key_client(runtime, ["read"], None, app) as c:
        yield c


@pytest.fixture
async def operator(runtime: Runtime, app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Operator over every organisation (commands, no admin)."""
    async with await key_client(runtime, ["read", "commands"], None, app) as c:
        yield c


@pytest.fixture
async def org1_viewer(runtime: Runtime, app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Read-only, sees only ``org1``."""
    async with await key_client(runtime, ["read"], "org1", app) as c:
        yield c


@pytest.fixture
async def org1_operator(runtime: Runtime, app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Operator of org1 only."""
    async with await key_client(runtime, ["read", "commands"], "org1", app) as c:
        yield c


@pytest.fixture
async def org2_operator(runtime: Runtime, app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Operator of org2 only."""
    async with await key_client(runtime, ["read", "commands"], "org2", app) as c:
        yield c


@pytest.fixture
async def org1_admin(runtime: Runtime, app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Admin of org1 only."""
    async with await key_client(runtime, ["read", "commands", "admin"], "org1", app) as c:
        yield c


@pytest.fixture
async def admin_key(runtime: Runtime) -> str:
    """An API key with every scope over every organisation."""
    created = await runtime.services.apikeys.create("tests", "tests", ["read", "commands", "admin"], None)
    return created.key


@pytest.fixture
async def anon_client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process HTTP client without credentials, on the test's own event loop.

    Litestar's ``AsyncTestClient`` runs the app in a portal thread with another loop,
    which cannot share the runtime's NATS connection; httpx's ASGI transport can.
    """
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as test_client:
        yield test_client


@pytest.fixture
async def client(app: Any, admin_key: str) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process HTTP client authenticated with an admin API key."""
    async with api_client(app, admin_key) as test_client:
        yield test_client


class KeyConnection:
    """A NATS connection made with an API key's NKey credential (device or reader): ``errors`` collects the server's
    asynchronous refusals, ``closed`` is set (and ``closed_at`` stamped) when the server drops it."""

    def __init__(self, nc: NATS, errors: list[str], closed: asyncio.Event) -> None:
        self.nc = nc
        self.errors = errors
        self.closed = closed
        self.closed_at = 0.0


async def connect_with_key(rt: Runtime, key: NewKey, kind: type[KeyConnection] = KeyConnection) -> Any:
    """Connect to ``rt``'s embedded nats-server as ``key`` would (its seed and inbox prefix, no reconnects)."""
    assert rt.nats_server is not None and key.nats_seed
    errors: list[str] = []
    closed = asyncio.Event()
    holder: list[KeyConnection] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    async def on_closed() -> None:
        if holder and not holder[0].closed_at:
            holder[0].closed_at = time.monotonic()
        closed.set()

    nc = await nats.connect(
        rt.nats_server.url,
        nkeys_seed_str=key.nats_seed,
        inbox_prefix=inbox_prefix(key.key_id),
        error_cb=on_error,
        closed_cb=on_closed,
        disconnected_cb=on_closed,
        allow_reconnect=False,
    )
    holder.append(kind(nc, errors, closed))
    return holder[0]


class LiveServer:
    """The app served by uvicorn on a free port inside the test's event loop."""

    def __init__(self, runtime: Runtime, app: Any = None) -> None:
        self.runtime = runtime
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app if app is not None else create_app(runtime),
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self.server = EmbeddedServer(config)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        task = self.task = asyncio.create_task(self.server.serve())
        await eventually(lambda: self.server.started or task.done(), interval=0.02, what="the live server")
        if task.done():
            raise RuntimeError("live server did not start")

    async def stop(self) -> None:
        self.runtime.hub.close_all()
        self.server.should_exit = True
        if self.task:
            await asyncio.wait_for(self.task, 10)


@pytest.fixture
async def live_server(runtime: Runtime, app: Any) -> AsyncIterator[LiveServer]:
    """The app on a real HTTP port (for SSE clients and the browser)."""
    server = LiveServer(runtime, app)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


# For a ``serve --demo`` whose test is not about detection: the demo camera's detector child looks at one
# frame a second instead of every frame (it takes a whole core otherwise, which the rest of the suite needs).
QUIET_DETECTOR = {"DETECT_MAX_FPS": "1"}


class ServerProcess:
    """``overwatch serve`` as a subprocess, with its output kept for failure messages."""

    def __init__(
        self, data_dir: Path, env: dict[str, str] | None = None, args: list[str] | None = None, port: int | None = None
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir.parent / f"serve-{self.port}.log"
        self.env = {
            **os.environ,
            "OVERWATCH_DATA_DIR": str(data_dir),
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            "NATS_PORT": "-1",
            "LOG_LEVEL": "INFO",
            **(env or {}),
        }
        self.args = args or []
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServerProcess:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [OVERWATCH, "serve", *self.args],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir.parent,
        )
        return self

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Wait for ``/health/ready`` = 200; return seconds waited.

        The default is a harness deadline, not a requirement (a test that asserts start-up time passes its own):
        a python process importing the whole app takes a few CPU seconds, many more on a machine under load."""
        start = time.monotonic()

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{self.url}/health/ready", timeout=1.0).status_code == 200
            return False

        try:
            wait_until(ready, timeout=timeout, what="/health/ready")
        except AssertionError as exc:
            if str(exc).startswith("timed out"):
                raise AssertionError(f"{exc}:\n{self.output()}") from None
            raise
        return time.monotonic() - start

    async def ready(self, timeout: float = 60.0) -> float:
        """``wait_ready`` for an async test: polled in a thread, so the test's event loop (a publisher, the browser
        connection) keeps running meanwhile."""
        return await asyncio.to_thread(self.wait_ready, timeout)

    def api_key(self, role: str = "admin", org: str | None = None) -> str:
        """Create an API key with ``overwatch apikey create`` on this server's data dir."""
        args = [OVERWATCH, "apikey", "create", "--name", f"test-{role}", "--role", role]
        if org:
            args += ["--org", org]
        out = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=30, check=True).stdout
        return next(line.split()[-1] for line in out.splitlines() if line.startswith("api key:"))

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def nats_child_pids(self) -> list[int]:
        """PIDs of nats-server processes whose parent is this server."""
        assert self.proc is not None
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid), "nats-server"], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def stop(self, sig: int = signal.SIGINT, timeout: float = 10.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[Any]:
    """Factory for ``overwatch serve`` subprocesses; all are stopped at the end."""
    started: list[ServerProcess] = []

    def make(
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        data_dir: Path | None = None,
        port: int | None = None,
    ) -> ServerProcess:
        proc = ServerProcess(data_dir or tmp_path / "data", env, args, port).start()
        started.append(proc)
        return proc

    yield make
    for proc in started:
        with contextlib.suppress(Exception):
            proc.stop(signal.SIGKILL)
