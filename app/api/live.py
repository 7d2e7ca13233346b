"""The downstream PRD's convenience routes: ``/api/entities`` and ``/api/entities/{entity_id}``."""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath

from app.api.entities import stored_state
from app.api.schemas import LiveEntity
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

    @get("/")
    async def live_entities(self, runtime: NamedDependency[Runtime]) -> list[LiveEntity]:
        """Entities that are live now, with status and active object count."""
        out = []
        for entity_id, view in sorted(runtime.services.state_cache.all().items()):
            if not view.get("is_live"):
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
