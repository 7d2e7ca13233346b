"""The downstream PRD's convenience routes: ``/api/entities`` and ``/api/entities/{entity_id}``."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath

from app.api.entities import stored_state
from app.api.schemas import LiveEntity
from app.auth.guards import principal_of, requires
from app.runtime import Runtime


def _active_objects(view: dict[str, object]) -> int:
    analytics = view.get("analytics")
    summary = analytics.get("summary") if isinstance(analytics, dict) else None
    count = summary.get("active_objects_count") if isinstance(summary, dict) else None
    if isinstance(count, int):
        return count
    detections = view.get("detections")
    objects = detections.get("objects") if isinstance(detections, dict) else None
    return len(objects) if isinstance(objects, dict) else 0


class LiveEntityController(Controller):
    """Live entities straight from the state cache (no database query)."""

    path = "/api/entities"
    tags = ["state"]
    guards = [requires("read")]

    @get("/")
    async def live_entities(
        self, request: Request[Any, Any, Any], runtime: NamedDependency[Runtime]
    ) -> list[LiveEntity]:
        """Entities that are live now (of the caller's organisations), with status and active object count."""
        principal = principal_of(request)
        out = []
        for entity_id, view in sorted(runtime.services.state_cache.all().items()):
            if not view.get("is_live") or not principal.sees(str(view.get("org_id") or "")):
                continue
            out.append(
                LiveEntity(
                    entity_id=entity_id,
                    org_id=str(view.get("org_id") or ""),
                    status=str(view.get("status") or ""),
                    is_live=True,
                    active_objects=_active_objects(view),
                    updated_at=str(view.get("updated_at") or ""),
                )
            )
        return out

    @get("/{entity_id:str}")
    async def entity_state(self, entity_id: FromPath[str], runtime: NamedDependency[Runtime]) -> Response[bytes]:
        """The EntityState as stored."""
        return await stored_state(runtime, entity_id)
