"""``overwatch serve`` as a subprocess for the benchmarks: temp data dir, free ports, an admin key.

Imported by the scripts in ``bench/`` (run as ``python bench/<name>.py``, so this
directory is on ``sys.path``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from services.nats_auth import internal_password

OVERWATCH = str(Path(sys.executable).parent / "overwatch")


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_stats(pid: int) -> tuple[float, float]:
    """(CPU seconds used, RSS MB) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = next(
        int(line.split()[1])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    return cpu, rss / 1024


class BenchServer:
    """``async with BenchServer() as s``: a ready server at ``s.url`` with NATS at ``s.nats_url``."""

    def __init__(self, **env: str) -> None:
        self._tmp = tempfile.TemporaryDirectory()
        self.dir = self._tmp.name
        self.port, self.nats_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.nats_url = f"nats://127.0.0.1:{self.nats_port}"
        self.env = {
            **os.environ,
            "OVERWATCH_DATA_DIR": f"{self.dir}/data",
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            "NATS_PORT": str(self.nats_port),
            "LOG_LEVEL": "WARNING",
            **env,
        }
        self.key = ""
        self.proc: subprocess.Popen[bytes] | None = None

    async def __aenter__(self) -> BenchServer:
        out = subprocess.run(
            [OVERWATCH, "apikey", "create", "--name", "bench", "--role", "admin"],
            env=self.env,
            cwd=self.dir,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        self.key = next(line.split()[-1] for line in out.splitlines() if line.startswith("api key:"))
        self.proc = subprocess.Popen([OVERWATCH, "serve"], env=self.env, cwd=self.dir)
        async with self.http() as h:
            for _ in range(200):
                try:
                    if (await h.get("/health/ready")).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.05)
        raise RuntimeError("overwatch serve did not become ready")

    async def __aexit__(self, *exc: Any) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(15)
        self._tmp.cleanup()

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.proc is not None
        return self.proc.pid

    def http(self) -> httpx.AsyncClient:
        """An HTTP client authenticated with the admin key."""
        return httpx.AsyncClient(base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=10)

    def nats_password(self) -> str:
        """The internal NATS user's password (the server's own credentials)."""
        return internal_password(Path(f"{self.dir}/data/secret").read_text().strip())
