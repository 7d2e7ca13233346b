"""Shared, briefly cached figures for the console (so 100 browsers do not mean 100 queries a second)."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from nats.aio.client import Client as NATS

from core.topics import Topic
from db import alerts as alerts_db
from db import detections as detections_db
from db import registry as registry_db
from db.database import Database
from fabric.client import server_address
from services.console.cards import EntityCard, FleetSummary, entity_card, fleet_summary
from services.hub import Hub, Update
from services.state_cache import StateCache
from services.state_view import EntityView

TTL = 1.0  # seconds a database figure is reused


class SystemStatus(msgspec.Struct, frozen=True):
    """Template context of ``partials/system-status.html``."""

    nats_connected: bool
    nats_url: str
    embedded: bool
    organizations: int
    entities: int
    sse_clients: int


class ConsoleData:
    """Cards from the state cache; counts from SQLite, cached for ``TTL``."""

    def __init__(
        self,
        db: Database,
        cache: StateCache,
        hub: Hub | None = None,
        nc: NATS | None = None,
        embedded_nats: bool = False,
    ) -> None:
        self.db = db
        self.cache = cache
        self.hub = hub
        self.nc = nc  # the server's NATS connection, for the status strip
        self.embedded_nats = embedded_nats
        self._memo: dict[Any, tuple[float, int]] = {}
        if hub is not None:
            hub.add_listener(self._on_update)

    def _on_update(self, update: Update) -> None:
        # An alert changed and the streams re-render the badge now: read its count afresh
        # (a figure memoised just before the change would stay on screen until the next one).
        if update.topic == Topic.ALERTS:
            for key in [k for k in self._memo if isinstance(k, tuple) and k[0] == "alerts"]:
                del self._memo[key]

    def cards(self, org_ids: list[str] | None) -> list[EntityCard]:
        """Cards of every visible entity (root keys only), by name.

        A view's ``org_id`` is the registry's (the state cache sets it and withholds views
        whose value names another organisation), so filtering on it is the organisation wall.
        """
        visible = None if org_ids is None else set(org_ids)
        out = []
        for entity_id, view in self.cache.views().items():
            if "." in entity_id:
                continue
            if visible is not None and view.org_id not in visible:
                continue
            out.append(entity_card(view))
        out.sort(key=lambda c: (c.name.lower(), c.entity_id))
        return out

    def view(self, entity_id: str) -> EntityView | None:
        """One entity's typed state view (``None`` if it has none or it is withheld)."""
        return self.cache.view(entity_id)

    def card(self, entity_id: str) -> EntityCard | None:
        """One entity's card."""
        view = self.cache.view(entity_id)
        return entity_card(view) if view else None

    async def _memoised(self, key: Any, compute: Any) -> int:
        hit = self._memo.get(key)
        now = time.monotonic()
        if hit and now - hit[0] < TTL:
            return hit[1]
        value = int(await compute())
        self._memo[key] = (now, value)
        return value

    async def open_alerts(self, org_ids: list[str] | None) -> int:
        """Active, unacknowledged alerts of the visible organisations."""
        key = ("alerts", tuple(org_ids) if org_ids is not None else None)
        return await self._memoised(
            key, lambda: alerts_db.count_alerts(self.db, status="active", org_ids=org_ids, unacknowledged=True)
        )

    async def detections_per_minute(self, org_ids: list[str] | None = None) -> int:
        """Detection events of the visible organisations stored in the last 60 s."""
        key = ("dpm", tuple(org_ids) if org_ids is not None else None)
        return await self._memoised(
            key, lambda: detections_db.count_detections(self.db, since=time.time() - 60, org_ids=org_ids)
        )

    async def summary(self, org_ids: list[str] | None) -> FleetSummary:
        """The analytics counters over every visible entity."""
        return fleet_summary(
            self.cards(org_ids), await self.detections_per_minute(org_ids), await self.open_alerts(org_ids)
        )

    async def system_status(self, org_ids: list[str] | None = None) -> SystemStatus:
        """NATS connection, organisation and entity counts (of the caller's organisations), live streams."""
        nc = self.nc
        if org_ids is None:
            orgs = await registry_db.count_organizations(self.db)
            entities = await registry_db.count_entities(self.db)
        else:
            orgs = len(org_ids)
            entities = sum([await registry_db.count_entities(self.db, o) for o in org_ids])
        return SystemStatus(
            nats_connected=bool(nc and nc.is_connected),
            nats_url=server_address(nc.connected_url) if nc and nc.connected_url else "",
            embedded=self.embedded_nats,
            organizations=orgs,
            entities=entities,
            sse_clients=self.hub.client_count if self.hub is not None else 0,
        )
