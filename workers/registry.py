"""RegistryProjector: keeps this node's SQLite registry in step with the NATS bucket.

It watches ``CONSTELLATION_REGISTRY`` from the beginning (the watcher first replays
the latest value of every key, deletes included, then streams live changes), so a
node started with an empty database rebuilds the same organisations and entities.

A record that disagrees with its key, or would move an entity to another
organisation, is refused (``services.registry.RegistryRejected``): logged with the reason,
counted per reason in ``rejected`` and as a failure, and never projected.
"""

from __future__ import annotations

import asyncio
import logging

from nats.js.kv import KeyValue

from fabric.watch import follow_bucket
from services.registry import RegistryRejected, apply_registry_entry
from workers.base import Worker, WorkerContext

log = logging.getLogger("overwatch.workers.registry")


class RegistryProjector(Worker):
    """Projects registry bucket changes into SQLite (one per node, no durable consumer)."""

    name = "registry"

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        self.synced = asyncio.Event()
        self.rejected: dict[str, int] = {}  # refused records by reason

    async def run(self) -> None:
        """Replay then follow the registry bucket until stopped."""

        async def on_entry(entry: KeyValue.Entry) -> None:
            value = None if entry.operation in ("DEL", "PURGE") else entry.value
            try:
                await apply_registry_entry(self.ctx.db, self.ctx.hub, entry.key, value, entry.revision or 0)
            except RegistryRejected as exc:
                self.rejected[exc.reason] = self.rejected.get(exc.reason, 0) + 1
                self.stats.failed += 1
                self.stats.last_error = exc.detail
                log.warning("%s (revision %s)", exc.detail, entry.revision)
                return
            self.stats.processed += 1

        async def on_synced() -> None:
            if not self.synced.is_set():
                log.info("registry projection synced (%d records)", self.stats.processed)
            self.synced.set()

        await follow_bucket(self.ctx.nc, self.ctx.kv_registry, on_entry, self.stopping, on_synced)
