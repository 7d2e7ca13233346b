"""NatsAuthWorker: keeps the embedded nats-server's users in step with API keys and entities."""

from __future__ import annotations

from workers.base import Worker


class NatsAuthWorker(Worker):
    """Runs ``services.nats_auth`` (idle when NATS is external)."""

    name = "nats-auth"

    async def run(self) -> None:
        """Re-render and reload the authorization block on changes until stopped."""
        manager = self.ctx.services.nats_auth
        if manager is None:
            await self.stopping.wait()
            return
        await manager.run(self.stopping)
        self.stats.processed = manager.reloads
