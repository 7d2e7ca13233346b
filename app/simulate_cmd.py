"""``overwatch simulate``: run the fleet simulator against any NATS server."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from app.cmdline import stop_on_signals
from app.logs import setup_logging
from app.runtime import client_auth
from core import topology
from core.contracts.common import encode, new_id, utc_now
from core.contracts.events import EntityLifecycleEvent, LifecycleData
from core.settings import Settings
from fabric.client import NatsConnectError, close_quietly, connect
from workers.simulator import KINDS, FaultConfig, Simulator, make_fleet

log = logging.getLogger("overwatch.simulator")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``overwatch simulate``."""
    p.add_argument("--nats-url", dest="nats_url", help="NATS server (default: NATS_URL or the local embedded one)")
    p.add_argument("--org", default="demo", help="organisation id (must exist; default demo)")
    p.add_argument("--count", type=int, default=5, help="number of entities (default 5)")
    p.add_argument("--prefix", default="sim", help="entity id prefix (default sim → sim-0001 ...)")
    p.add_argument("--rate", type=float, default=2.0, help="telemetry messages per entity per second (default 2)")
    p.add_argument("--home", default="37.4275,-122.1697", help="home point lat,lon")
    p.add_argument("--register", action="store_true", help="announce the entities (entities.created events)")
    p.add_argument("--bad-payload-rate", type=float, default=0.0, help="share of publishes that are garbage (0..1)")
    p.add_argument("--dropout-rate", type=float, default=0.0, help="chance per entity per second of going silent")
    p.add_argument("--dropout-seconds", type=float, default=15.0, help="length of a silence (default 15 s)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--seed", type=int, default=7, help="random seed")


def fleet_ids(prefix: str, count: int) -> list[tuple[str, str]]:
    """``(entity_id, entity_type)`` for ``count`` entities cycling through the kinds."""
    return [(f"{prefix}-{i:04d}", KINDS[i % len(KINDS)]) for i in range(1, count + 1)]


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    try:
        lat_s, lon_s = args.home.split(",")
        home = (float(lat_s), float(lon_s))
        topology.token(args.org, "organisation id")
        topology.token(f"{args.prefix}-0001", "entity id prefix")
    except (ValueError, topology.InvalidToken) as exc:
        print(f"overwatch simulate: {exc}", file=sys.stderr)
        return 2
    servers = [args.nats_url] if args.nats_url else settings.nats_servers or [f"nats://127.0.0.1:{settings.nats_port}"]
    try:
        auth: dict[str, Any] = client_auth(settings) if not args.nats_url else {"token": settings.nats_token}
        nc = await connect(servers, name="overwatch-simulator", timeout=settings.startup_timeout, **auth)
    except NatsConnectError as exc:
        print(f"overwatch simulate: {exc}", file=sys.stderr)
        return 1
    ids = fleet_ids(args.prefix, args.count)
    if args.register:
        for entity_id, kind in ids:
            event = EntityLifecycleEvent(
                id=new_id(),
                type="created",
                timestamp=utc_now(),
                source="simulator",
                data=LifecycleData(
                    entity_id=entity_id, org_id=args.org, entity_type=kind, name=entity_id, status="active"
                ),
            )
            await nc.jetstream().publish(topology.entity_lifecycle_subject(args.org, "created"), encode(event))
    faults = FaultConfig(args.bad_payload_rate, args.dropout_rate, args.dropout_seconds)
    sim = Simulator(nc, make_fleet(args.org, ids, home, args.seed), args.rate, faults, args.seed)
    stopping = stop_on_signals()
    log.info("simulating %d entities of %s at %.1f Hz on %s", len(ids), args.org, args.rate, ", ".join(servers))
    try:
        await sim.run(stopping, args.duration)
    finally:
        await close_quietly(nc)
    log.info(
        "published %d telemetry messages (%d bad), handled %d commands",
        sim.published,
        sim.bad_published,
        sim.commands_handled,
    )
    return 0


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Entry point of ``overwatch simulate``."""
    setup_logging(settings.log_level, settings.log_format)
    return asyncio.run(_run(settings, args))
