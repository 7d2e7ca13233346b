"""Wires ``overwatch serve``: logging, the worker set, the demo seed, and the event loop."""

from __future__ import annotations

import asyncio
import logging
import sys

from app.logs import setup_logging
from app.runtime import Runtime, StartupError, WorkerFactory
from app.server import serve
from app.settings import Settings

log = logging.getLogger("overwatch")


def worker_factories() -> list[WorkerFactory]:
    """Every in-process worker, in start order."""
    from workers.registry import RegistryProjector

    return [RegistryProjector]


async def after_start(runtime: Runtime) -> None:
    """Hooks that need a started runtime (demo seed)."""
    if runtime.settings.demo:
        from app.demo import seed_demo

        await seed_demo(runtime)


def run_server(settings: Settings) -> int:
    """Run the server; print one clear line and return non-zero on startup failure."""
    setup_logging(settings.log_level, settings.log_format)
    try:
        return asyncio.run(serve(settings, worker_factories(), after_start))
    except StartupError as exc:
        log.debug("startup failed", exc_info=True)
        print(f"overwatch: error: {exc}", file=sys.stderr)
        return 1
