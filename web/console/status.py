"""The system status strip: NATS connection, organisations, entities, live streams."""

from __future__ import annotations

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
    sse_clients: int


async def system_status(runtime: Runtime, org_ids: list[str] | None = None) -> SystemStatus:
    """Current system status (counts limited to the caller's organisations)."""
    nc = runtime.nc
    if org_ids is None:
        orgs = await registry_db.count_organizations(runtime.db)
        entities = await registry_db.count_entities(runtime.db)
    else:
        orgs = len(org_ids)
        entities = sum([await registry_db.count_entities(runtime.db, o) for o in org_ids])
    return SystemStatus(
        nats_connected=bool(nc and nc.is_connected),
        nats_url=nc.connected_url.netloc if nc and nc.connected_url else "",
        embedded=runtime.nats_server is not None,
        organizations=orgs,
        entities=entities,
        sse_clients=runtime.hub.client_count,
    )
