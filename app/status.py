"""The system status shown in the console header and on the overview."""

from __future__ import annotations

import time

import msgspec

from app.runtime import Runtime
from db import registry as registry_db

SYSTEM_TOPIC = "system"


class SystemStatus(msgspec.Struct, frozen=True):
    """Template context of ``partials/system-status.html``."""

    nats_connected: bool
    nats_url: str
    embedded: bool
    organizations: int
    entities: int
    uptime_s: int
    sse_clients: int


async def system_status(runtime: Runtime) -> SystemStatus:
    """Current system status from the runtime and the registry projection."""
    nc = runtime.nc
    return SystemStatus(
        nats_connected=bool(nc and nc.is_connected),
        nats_url=nc.connected_url.netloc if nc and nc.connected_url else "",
        embedded=runtime.nats_server is not None,
        organizations=await registry_db.count_organizations(runtime.db),
        entities=await registry_db.count_entities(runtime.db),
        uptime_s=int(time.time() - runtime.started_at),
        sse_clients=runtime.hub.client_count,
    )
