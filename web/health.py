"""Health checks: ``/health/live`` (process up) and ``/health/ready`` (dependencies)."""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.di import NamedDependency

from services.health import Health


class HealthController(Controller):
    """Unauthenticated health endpoints for orchestrators and load balancers."""

    path = "/health"
    tags = ["health"]
    opt = {"public": True, "anonymous": True}

    @get("/live", sync_to_thread=False)
    def live(self, health: NamedDependency[Health]) -> dict[str, object]:
        """The process is up and serving HTTP."""
        return {"status": "ok", "uptime_s": round(health.uptime(), 1)}

    @get("/ready")
    async def ready(self, health: NamedDependency[Health]) -> Response[dict[str, object]]:
        """200 when NATS, JetStream, the database and all workers are healthy, else 503.

        ``status`` is ``degraded`` (still 200) when a check is ok but marked ``degraded``: a
        cluster that lost a server but kept its quorum, an edge box whose hub link is down.
        """
        checks = await health.readiness()
        ok = all(c["ok"] for c in checks.values())
        degraded = not ok or any(c.get("degraded") for c in checks.values())
        body: dict[str, object] = {"status": "degraded" if degraded else "ok", "checks": checks}
        return Response(body, status_code=200 if ok else 503)
