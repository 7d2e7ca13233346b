"""NatsAuthWorker: keeps the embedded nats-server's users in step with API keys and entities."""

from __future__ import annotations

from services.nats_auth import NatsAuthManager
from workers.base import Worker, WorkerContext


class NatsAuthWorker(Worker):
    """Runs ``services.nats_auth`` (idle when NATS is external)."""

    def __init__(self, ctx: WorkerContext, nats_auth: NatsAuthManager | None) -> None:
        super().__init__(ctx)
        self.nats_auth = nats_auth

    name = "nats-auth"

    async def run(self) -> None:
        """Re-render and reload the authorization block on changes until stopped."""
        manager = self.nats_auth
        if manager is None:
            await self.stopping.wait()
            return
        await manager.run(self.stopping)
        self.stats.processed = manager.reloads
