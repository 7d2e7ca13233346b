"""Wires ``overwatch serve``: logging, the worker set, the demo seed, and the event loop."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable

from app.datadir import StartupError
from app.logs import setup_logging
from app.runtime import Runtime, WorkerFactory
from app.server import serve
from core.settings import Settings

log = logging.getLogger("overwatch")


def worker_factories(settings: Settings | None = None) -> list[WorkerFactory]:
    """Every in-process worker, in start order (a hub of edge boxes, ``OVERWATCH_EDGES``, has six more)."""
    from workers.commands import CommandProjector, CommandWorker
    from workers.cot import CotGateway
    from workers.entity import EntityWorker
    from workers.events import EventProjector, EventWorker
    from workers.nats_auth import NatsAuthWorker
    from workers.registry import RegistryProjector
    from workers.rules import RuleEvaluator
    from workers.state_keeper import StateKeeper
    from workers.state_watch import StateWatcher
    from workers.status_events import StatusEvents
    from workers.telemetry import TelemetryWorker
    from workers.tracks import TrackProjector
    from workers.video import VideoWorker

    edge: list[WorkerFactory] = []
    if settings is not None and settings.edge_list:
        from workers.edge import edge_worker_factories

        edge = edge_worker_factories()
    # Each worker gets the services it uses, by name; nothing receives the whole set.
    return [
        lambda ctx, s: RegistryProjector(ctx),
        lambda ctx, s: StateWatcher(ctx, s.state_cache),
        lambda ctx, s: StatusEvents(ctx, s.state_cache),
        lambda ctx, s: EntityWorker(ctx, s.registry),
        lambda ctx, s: TelemetryWorker(ctx, s.state_cache),
        lambda ctx, s: EventWorker(ctx),
        lambda ctx, s: CommandWorker(ctx, s.state_cache, s.commands),
        # This node's own histories: every message (tracks: every sampled point), through consumers named
        # after the node.
        lambda ctx, s: TrackProjector(ctx),
        lambda ctx, s: EventProjector(ctx, s.alerts),
        lambda ctx, s: CommandProjector(ctx, s.commands),
        lambda ctx, s: VideoWorker(ctx, s.video),
        lambda ctx, s: NatsAuthWorker(ctx, s.nats_auth),
        lambda ctx, s: StateKeeper(ctx, s.state_cache),
        lambda ctx, s: RuleEvaluator(ctx, s.state_cache, s.rules),
        lambda ctx, s: CotGateway(ctx, s.state_cache, s.registry),
        *edge,
    ]


async def after_start(runtime: Runtime) -> None:
    """Hooks that need a started runtime: the first admin account, the demo seed, the MAVLink bridge."""
    password = await runtime.services.users.bootstrap_admin()
    if password:
        # Shown exactly once: only its scrypt hash is stored.
        banner = (
            f"First run: created admin account {runtime.settings.admin_email} with password {password}\n"
            "Write it down now; it is not shown again (reset with `overwatch user reset-password`)."
        )
        print("\n" + banner + "\n", file=sys.stderr, flush=True)
    from services.mavlink import readiness

    readiness.configure(runtime.settings.battery_alert_percent)
    if runtime.settings.demo:
        from app.demo import seed_demo, start_demo_detector, start_demo_fleet, start_demo_mavlink

        await seed_demo(runtime)
        start_demo_fleet(runtime)
        if runtime.settings.demo_detect:
            start_demo_detector(runtime)
        await start_demo_mavlink(runtime)  # the bridge (with any MAVLINK_* links) and one emulated vehicle
    elif runtime.settings.mavlink:
        from app.mavlink_serve import bridge_settings, start_bridge

        await start_bridge(runtime, bridge_settings(runtime))


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (it comes with ``uvicorn[standard]``): about half the per-message
    overhead of the default loop on the NATS hot paths."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_server(settings: Settings) -> int:
    """Run the server; print one clear line and return non-zero on startup failure."""
    setup_logging(settings.log_level, settings.log_format)
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            return runner.run(serve(settings, worker_factories(settings), after_start))
    except StartupError as exc:
        log.debug("startup failed", exc_info=True)
        print(f"overwatch: error: {exc}", file=sys.stderr)
        return 1
