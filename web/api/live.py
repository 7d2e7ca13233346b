"""The downstream PRD's convenience routes: ``/api/entities`` and ``/api/entities/{entity_id}``."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency

from core.errors import NotFound
from services.state_reader import StateReader
from web.api.entities import stored_response
from web.api.params import ERRORS, IdPath
from web.api.schemas import LiveEntity
from web.auth.guards import authorize, principal_of, requires


class LiveEntitiesApiController(Controller):
    """Live entities straight from the state cache (no database query)."""

    path = "/api/entities"
    tags = ["state"]
    guards = [requires("read")]

    @get("/", responses=ERRORS)
    async def live_entities(
        self, request: Request[Any, Any, Any], state_reader: NamedDependency[StateReader]
    ) -> list[LiveEntity]:
        """Entities that are live now (of the caller's organisations), with status and active object count."""
        principal = principal_of(request)
        out = []
        for entity_id, view in sorted(state_reader.views().items()):
            if not view.is_live or not principal.sees(view.org_id):
                continue
            out.append(
                LiveEntity(
                    entity_id=entity_id,
                    org_id=view.org_id,
                    status=view.status,
                    is_live=True,
                    active_objects=int(view.active_objects)
                    if view.active_objects is not None
                    else len(view.objects),
                    updated_at=view.updated_at,
                )
            )
        return out

    @get("/{entity_id:str}", responses=ERRORS)
    async def entity_state(
        self, request: Request[Any, Any, Any], entity_id: IdPath, state_reader: NamedDependency[StateReader]
    ) -> Response[dict[str, Any]]:
        """The EntityState as stored (of an entity in one of the caller's organisations)."""
        view = state_reader.view(entity_id)
        if view is None:
            raise NotFound(f"no state stored for entity {entity_id} yet")
        await authorize(request, view.org_id, "read")
        return stored_response(await state_reader.stored(entity_id))
