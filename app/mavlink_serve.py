"""The MAVLink bridge inside ``overwatch serve`` (``OVERWATCH_MAVLINK=true``, and always for ``--demo``).

In-process, the bridge uses the server's own NATS connection instead of device
credentials; everything else — registration through ``entities.{org}.created``,
telemetry, commands and acks on NATS — is exactly what ``overwatch mavlink`` does.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from app.datadir import StartupError
from app.runtime import Runtime
from core.settings import ConfigError, raw_values
from services.mavlink.bridge import Bridge, BridgeError
from services.mavlink.config import MAVLINK_SETTINGS, LinkSpec, MavlinkSettings, load_mavlink_settings
from services.mavlink.mapping import Binding, MappingError, load_mapping

log = logging.getLogger("overwatch.mavlink")


def bridge_settings(runtime: Runtime, default_org: str = "") -> MavlinkSettings:
    """``MAVLINK_*`` from the environment and ``.env``; ``default_org`` (the demo's) unless ``MAVLINK_ORG`` is set."""
    dotenv = Path(".env")
    overrides: dict[str, str] = {}
    if default_org and "org_id" not in raw_values(MAVLINK_SETTINGS, None, None, dotenv):
        overrides["org_id"] = default_org
    if not runtime.settings.mavlink:
        # The demo alone: none of the configured links, only the demo's private one.
        overrides |= {"listen": "", "connect": "", "serial": ""}
    try:
        return load_mavlink_settings(overrides, dotenv=dotenv, need_links=runtime.settings.mavlink)
    except ConfigError as exc:
        raise StartupError(f"MAVLink bridge: {exc}") from None


async def start_bridge(
    runtime: Runtime,
    settings: MavlinkSettings,
    extra_links: list[LinkSpec] | None = None,
    mapping: dict[int, Binding] | None = None,
) -> Bridge:
    """Start a bridge on the runtime's NATS connection; it stops when the server does."""
    assert runtime.nc is not None
    try:
        if mapping is None:
            mapping = load_mapping(settings.mapping) if settings.mapping else {}
    except MappingError as exc:
        raise StartupError(f"MAVLINK_MAPPING: {exc}") from None
    bridge = Bridge(settings, runtime.nc, mapping=mapping, links=settings.links + list(extra_links or []))
    try:
        await bridge.start()
    except BridgeError as exc:
        raise StartupError(str(exc)) from None

    async def stop_with_server() -> None:
        await runtime.shutting_down.wait()
        await bridge.stop()

    runtime.background.append(asyncio.create_task(stop_with_server(), name="mavlink-bridge"))
    return bridge
