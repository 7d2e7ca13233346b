"""``overwatch mavlink``: the MAVLink bridge as its own process (flags override ``MAVLINK_*``).

It connects to NATS like any device: with ``NATS_URL`` and device credentials from
``overwatch apikey create --nats`` (``NATS_NKEY_SEED_STR`` + ``NATS_INBOX_PREFIX``), or,
without ``NATS_URL``, to this box's embedded server with the server's own user.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from app.cmdline import Flags, add_flags, env_file, flag_overrides, stop_on_signals
from app.logs import setup_logging
from core.settings import ConfigError, Settings
from services.mavlink.config import EXIT_CONFIG, MavlinkSettings, load_mavlink_settings
from services.mavlink.mapping import MappingError, load_mapping

FLAGS: Flags = {
    "org": ("org_id", str, "organisation new vehicles are registered in (MAVLINK_ORG)"),
    "listen": ("listen", str, "UDP endpoint(s) to listen on, udp:HOST:PORT (MAVLINK_LISTEN; udp:0.0.0.0:14550)"),
    "connect": ("connect", str, "endpoint(s) to connect to, udp:HOST:PORT or tcp:HOST:PORT (MAVLINK_CONNECT)"),
    "serial": ("serial", str, "serial device(s), /dev/ttyUSB0[:BAUD] (MAVLINK_SERIAL)"),
    "sysid": ("sysid", int, "the bridge's own MAVLink system id (MAVLINK_SYSID, default 255)"),
    "compid": ("compid", int, "the bridge's own component id (MAVLINK_COMPID, default 190)"),
    "mapping": ("mapping", str, "JSON/TOML file: names per system id, bindings to entities (MAVLINK_MAPPING)"),
    "entity-prefix": ("entity_prefix", str, "entity id prefix of new vehicles (MAVLINK_ENTITY_PREFIX, default mav-)"),
    "comm-lost-after": ("comm_lost_after", float, "seconds without HEARTBEAT = Comm lost (MAVLINK_COMM_LOST_AFTER)"),
    "command-timeout": ("command_timeout", float, "seconds to wait for COMMAND_ACK (MAVLINK_COMMAND_TIMEOUT)"),
    "command-retries": ("command_retries", int, "resends before 'no response' (MAVLINK_COMMAND_RETRIES)"),
    "nats-url": ("nats_url", str, "NATS server(s) (NATS_URL; default: this box's embedded server)"),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``overwatch mavlink``."""
    add_flags(p, FLAGS)


def settings_from(args: argparse.Namespace) -> MavlinkSettings:
    """The bridge's settings: flags > environment > ``.env`` > defaults."""
    return load_mavlink_settings(flag_overrides(args, FLAGS), dotenv=env_file(args))


def nats_target(s: MavlinkSettings, server: Settings) -> tuple[list[str], dict[str, Any]]:
    """Servers and connect options: the configured NATS with its credentials, or the local embedded one."""
    if not s.servers:
        from app.runtime import client_auth

        local = server.nats_servers or [f"nats://127.0.0.1:{server.nats_port}"]
        return local, client_auth(server)
    from fabric.tls import ca_context

    options: dict[str, Any] = {
        "token": s.nats_token,
        "creds": s.nats_creds,
        "nkey_seed_file": s.nats_nkey_seed_file,
        "nkey_seed": s.nats_nkey_seed,
        "user": s.nats_user,
        "password": s.nats_password,
        "inbox_prefix": s.nats_inbox_prefix,
    }
    if s.nats_tls_ca:
        options["tls"] = ca_context(s.nats_tls_ca, s.nats_tls_verify_hostname)
    return s.servers, options


async def _run(s: MavlinkSettings, server: Settings) -> int:
    from fabric.client import NatsConnectError, close_quietly, connect
    from services.mavlink.bridge import Bridge, BridgeError

    try:
        mapping = load_mapping(s.mapping) if s.mapping else {}
    except MappingError as exc:
        print(f"overwatch mavlink: MAVLINK_MAPPING: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    servers, options = nats_target(s, server)
    try:
        nc = await connect(servers, name=f"overwatch-mavlink-{s.org_id}", timeout=server.startup_timeout, **options)
    except NatsConnectError as exc:
        print(f"overwatch mavlink: {exc}", file=sys.stderr)
        return 1
    stopping = stop_on_signals()
    try:
        await Bridge(s, nc, mapping=mapping).run(stopping)
    except BridgeError as exc:
        print(f"overwatch mavlink: {exc}", file=sys.stderr)
        return 1
    finally:
        await close_quietly(nc)
    return 0


def run(args: argparse.Namespace, server: Settings) -> int:
    """Entry point of ``overwatch mavlink``."""
    try:
        settings = settings_from(args)
    except ConfigError as exc:
        print(f"overwatch mavlink: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(server.log_level, server.log_format)
    try:
        import uvloop  # the bridge's hot path is the event loop's datagram handling

        factory: Any = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(_run(settings, server))
