"""StatusEvents: an entity's live/offline transitions as ``status`` lifecycle events.

Each node's state cache sees every entity, so every node sees the same transitions: the
event's ``Nats-Msg-Id`` names the KV revision, and JetStream keeps one per revision. The
offline alert itself is the default offline rule's (``workers/rules.py``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from core import topology
from core.contracts.common import encode, new_id, utc_now
from core.contracts.events import EntityLifecycleEvent, LifecycleData
from core.topics import Topic
from services.hub import Update
from services.state_cache import StateCache
from workers.base import Worker, WorkerContext

log = logging.getLogger("overwatch.workers.status_events")


class StatusEvents(Worker):
    """Publishes a ``status`` event when an entity goes live or offline (one per node)."""

    name = "status-events"

    def __init__(self, ctx: WorkerContext, state_cache: StateCache) -> None:
        super().__init__(ctx)
        self.state_cache = state_cache
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.queued: set[str] = set()
        self.live: dict[str, bool] = {}
        ctx.hub.add_listener(self._on_update)

    def _on_update(self, update: Update) -> None:
        if update.topic == Topic.STATE and update.key not in self.queued:
            self.queued.add(update.key)
            self.queue.put_nowait(update.key)

    async def run(self) -> None:
        """Process changed entities until stopped."""
        while not self.stopping.is_set():
            try:
                entity_id = await asyncio.wait_for(self.queue.get(), 1.0)
            except TimeoutError:
                continue
            self.queued.discard(entity_id)
            try:
                await self.evaluate(entity_id, self.state_cache.get(entity_id))
                self.stats.processed += 1
            except Exception as exc:
                self.stats.failed += 1
                self.stats.last_error = str(exc)
                log.exception("status event failed for %s", entity_id)

    async def evaluate(self, entity_id: str, view: dict[str, Any] | None) -> None:
        """Publish a status event when the entity's liveness changed since it was last seen."""
        org_id = self.state_cache.org_of(entity_id)
        if view is None or org_id is None:  # deleted, unregistered or withheld: forget it
            self.live.pop(entity_id, None)
            return
        live = bool(view.get("is_live"))
        before = self.live.get(entity_id)
        self.live[entity_id] = live
        if before is not None and before != live:
            await self._status_event(entity_id, org_id, view, self.state_cache.revisions.get(entity_id, 0))

    async def _status_event(self, entity_id: str, org_id: str, view: dict[str, Any], revision: int) -> None:
        if not topology.TOKEN_RE.match(org_id):
            return
        event = EntityLifecycleEvent(
            id=new_id(),
            type="status",
            timestamp=utc_now(),
            source="overwatch",
            subject=topology.entity_lifecycle_subject(org_id, "status"),
            data=LifecycleData(
                entity_id=entity_id,
                org_id=org_id,
                status=view.get("status"),
                is_live=bool(view.get("is_live")),
                entity_type=view.get("entity_type"),
            ),
        )
        await self.ctx.js.publish(
            event.subject or "", encode(event), headers={"Nats-Msg-Id": f"{entity_id}-status-{revision}"}
        )
