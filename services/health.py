"""Liveness and readiness: the process's uptime and named checks of what it depends on.

``Health`` runs the checks it was built with (``build_services`` picks them: NATS,
JetStream, the database, the workers and, with the embedded server, the server and its
authorization), each bounded by a timeout, so ``/health/ready`` answers quickly even
when a dependency hangs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from db.database import Database
from fabric.client import server_address
from fabric.server import EmbeddedNats

Check = dict[str, Any]  # {"ok": bool, "detail": str}
CheckFn = Callable[[], Awaitable[Check]]
T = TypeVar("T")


class Health:
    """What ``/health/live`` and ``/health/ready`` report."""

    def __init__(self, started_at: float, checks: Mapping[str, CheckFn]) -> None:
        self.started_at = started_at  # time.time() when the process started
        self.checks = dict(checks)  # name -> check, in the order they are reported

    def uptime(self) -> float:
        """Seconds since the process started."""
        return time.time() - self.started_at

    async def readiness(self) -> dict[str, Check]:
        """Each readiness check with ``ok`` and a detail."""
        return {name: await check() for name, check in self.checks.items()}


def nats_check(nc: NATS) -> CheckFn:
    """The NATS connection is up (detail: the server it is connected to)."""

    async def check() -> Check:
        return {
            "ok": bool(nc.is_connected),
            "detail": server_address(nc.connected_url) if nc.connected_url else "not connected",
        }

    return check


def jetstream_check(js: JetStreamContext, timeout: float = 1.0) -> CheckFn:
    """JetStream answers an account-info request within ``timeout`` seconds."""
    return _answers_within(js.account_info, timeout, lambda info: f"{info.streams} streams, {info.consumers} consumers")


def database_check(db: Database, timeout: float = 2.0) -> CheckFn:
    """The database takes a write within ``timeout`` seconds."""
    return _answers_within(db.check_writable, timeout, lambda took: f"write {took * 1000:.1f} ms")


def _answers_within(probe: Callable[[], Awaitable[T]], timeout: float, detail: Callable[[T], str]) -> CheckFn:
    """A check that passes when ``probe`` answers within ``timeout`` seconds (detail: ``detail`` of the answer)."""

    async def check() -> Check:
        try:
            answer = await asyncio.wait_for(probe(), timeout)
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            return {"ok": False, "detail": str(exc) or type(exc).__name__}
        return {"ok": True, "detail": detail(answer)}

    return check


def workers_check(status: Callable[[], Mapping[str, bool]], expected: int) -> CheckFn:
    """All ``expected`` workers are running (``status``: worker name -> task running)."""

    async def check() -> Check:
        running = status()
        down = [name for name, up in running.items() if not up]
        return {
            "ok": not down and len(running) == expected,
            "detail": f"down: {', '.join(down)}" if down else f"{len(running)} running",
        }

    return check


def server_check(server: EmbeddedNats) -> CheckFn:
    """The embedded nats-server child is running."""

    async def check() -> Check:
        return {"ok": server.running, "detail": f"pid {server.pid}, restarts {server.restarts}"}

    return check


def status_check(status: Callable[[], Check]) -> CheckFn:
    """A check a service reports itself (e.g. the NATS authorization manager's ``status``)."""

    async def check() -> Check:
        return status()

    return check
