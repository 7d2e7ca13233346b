"""StateWatcher: runs the process's single KV watcher that fills the state cache."""

from __future__ import annotations

from workers.base import Worker


class StateWatcher(Worker):
    """Keeps ``services.state_cache`` current (one watcher per process)."""

    name = "state-watch"

    async def run(self) -> None:
        """Follow ``CONSTELLATION_GLOBAL_STATE`` until stopped."""
        cache = self.ctx.services.state_cache
        before = cache.entries
        await cache.run(self.stopping)
        self.stats.processed += cache.entries - before
