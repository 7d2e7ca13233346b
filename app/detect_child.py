"""Supervises an ``overwatch detect`` child process (the demo camera's detection worker).

The detector runs in its own process so inference never competes with the server's
event loop for the GIL. The child gets ``PR_SET_PDEATHSIG`` (it can never outlive the
server), its log lines are forwarded, and it is restarted with backoff when it dies —
except on exit code 78 (configuration error), which a restart cannot fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys

from fabric.server import pdeathsig_preexec
from workers.detect.config import EXIT_CONFIG

log = logging.getLogger("overwatch.detect.child")


class DetectChild:
    """One supervised detection worker process."""

    def __init__(self, env: dict[str, str], args: tuple[str, ...] = (), stop_timeout: float = 1.8) -> None:
        self.env = env
        self.args = args
        self.stop_timeout = stop_timeout
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.last_exit: int | None = None

    @property
    def running(self) -> bool:
        """Whether the child is alive now."""
        return self.proc is not None and self.proc.returncode is None

    async def run(self, stopping: asyncio.Event) -> None:
        """Start the child and keep it running until ``stopping`` is set; then stop it."""
        delay = 1.0
        try:
            while not stopping.is_set():
                started = asyncio.get_running_loop().time()
                code = await self._run_once(stopping)
                if stopping.is_set():
                    return
                self.last_exit = code
                if code == EXIT_CONFIG:
                    log.error("detection worker rejected its configuration (exit %d); not restarting", code)
                    return
                # A child that ran for a while gets a fresh backoff; a crash loop backs off to 60 s.
                if asyncio.get_running_loop().time() - started > 60:
                    delay = 1.0
                log.error("detection worker exited (code %s); restarting in %.0fs", code, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), delay)
                delay = min(delay * 2, 60.0)
        finally:
            await self.stop()

    async def _run_once(self, stopping: asyncio.Event) -> int:
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "app.cli",
            "detect",
            *self.args,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=pdeathsig_preexec(),
            start_new_session=True,  # a terminal Ctrl-C reaches the server, which stops us in order
        )
        self.starts += 1
        log.info("detection worker started (pid %s)", self.proc.pid)
        reader = asyncio.create_task(self._forward(self.proc))
        exited = asyncio.create_task(self.proc.wait())
        stop = asyncio.create_task(stopping.wait())
        try:
            await asyncio.wait({exited, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not exited.done():
            await self.stop()
        code = await exited
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reader, 1.0)
        return code

    async def _forward(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        while raw := await proc.stderr.readline():
            line = raw.decode(errors="replace").rstrip()
            if line:
                log.info("[detect] %s", line)

    async def stop(self) -> None:
        """SIGTERM the child (it sends its shutdown event and final state), SIGKILL after the timeout."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), self.stop_timeout)
        except TimeoutError:
            log.warning("detection worker did not stop within %.1fs; killing it", self.stop_timeout)
            proc.kill()
            await proc.wait()
