"""StateWatcher: runs the process's single KV watcher that fills the state cache."""

from __future__ import annotations

from services.state_cache import StateCache
from workers.base import Worker, WorkerContext


class StateWatcher(Worker):
    """Keeps ``services.state_cache`` current (one watcher per process)."""

    def __init__(self, ctx: WorkerContext, state_cache: StateCache) -> None:
        super().__init__(ctx)
        self.state_cache = state_cache

    name = "state-watch"

    async def run(self) -> None:
        """Follow ``CONSTELLATION_GLOBAL_STATE`` until stopped."""
        cache = self.state_cache
        before = cache.entries
        await cache.run(self.stopping)
        self.stats.processed += cache.entries - before
