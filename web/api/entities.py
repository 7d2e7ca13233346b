"""``/api/v1/organizations/{org_id}/entities``: entities, their state, commands, detections, alerts."""

from __future__ import annotations

import time
from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_202_ACCEPTED

from core.contracts.registry import EntityRecord
from core.structs import as_view
from services.alerts.store import AlertService
from services.commands import CommandService
from services.detections import DetectionService
from services.registry import RegistryService
from services.schemas import CommandCreate, CommandView, Deleted, EntityCreate, EntityUpdate, Page
from services.state_reader import StateReader, StoredState
from services.tracks import TrackService
from web.api.params import ERRORS, IdPath, Limit, Offset
from web.api.schemas import AlertView, DetectionView, TrackPointView
from web.api.views import alert_view, detection_view
from web.auth.guards import authorize, requires

Req = Request[Any, Any, Any]


class EntitiesApiController(Controller):
    """Entities of one organisation and everything attached to them."""

    path = "/api/v1/organizations/{org_id:str}/entities"
    tags = ["entities"]
    guards = [requires("read")]

    @post("/", status_code=HTTP_201_CREATED, responses=ERRORS)
    async def create_entity(
        self,
        request: Req,
        org_id: IdPath,
        data: JSONBody[EntityCreate],
        registry: NamedDependency[RegistryService],
    ) -> EntityRecord:
        """Register an entity under an organisation; returns it with its ``entity_id``."""
        actor = await authorize(request, org_id, "admin")
        return await registry.create_entity(org_id, data, actor)

    @get("/", responses=ERRORS)
    async def list_entities(
        self,
        request: Req,
        org_id: IdPath,
        registry: NamedDependency[RegistryService],
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> Page[EntityRecord]:
        """A page of the organisation's entities, by name."""
        await authorize(request, org_id, "read")
        return await registry.list_entities(org_id, limit, offset)

    @get("/{entity_id:str}", responses=ERRORS)
    async def get_entity(
        self,
        request: Req,
        org_id: IdPath,
        entity_id: IdPath,
        registry: NamedDependency[RegistryService],
    ) -> EntityRecord:
        """One entity's registry record."""
        await authorize(request, org_id, "read")
        return await registry.get_entity(org_id, entity_id)

    @put("/{entity_id:str}", responses=ERRORS)
    async def update_entity(
        self,
        request: Req,
        org_id: IdPath,
        entity_id: IdPath,
        data: JSONBody[EntityUpdate],
        registry: NamedDependency[RegistryService],
    ) -> EntityRecord:
        """Change the given fields of an entity."""
        actor = await authorize(request, org_id, "admin")
        return await registry.update_entity(org_id, entity_id, data, actor)

    @delete("/{entity_id:str}", status_code=200, responses=ERRORS)
    async def delete_entity(
        self,
        request: Req,
        org_id: IdPath,
        entity_id: IdPath,
        registry: NamedDependency[RegistryService],
    ) -> Response[Deleted]:
        """Delete an entity (registry record and state)."""
        actor = await authorize(request, org_id, "admin")
        await registry.delete_entity(org_id, entity_id, actor)
        return Response(Deleted(message="Entity deleted successfully"))

    @get("/{entity_id:str}/state", responses=ERRORS)
    async def get_state(
        self,
        request: Req,
        org_id: IdPath,
        entity_id: IdPath,
        state_reader: NamedDependency[StateReader],
    ) -> Response[dict[str, Any]]:
        """The EntityState exactly as stored in ``CONSTELLATION_GLOBAL_STATE``."""
        await authorize(request, org_id, "read")
        return stored_response(await state_reader.stored_in(org_id, entity_id))

    @post("/{entity_id:str}/commands", status_code=HTTP_202_ACCEPTED, responses=ERRORS)
    async def send_command(
        self,
        request: Req,
        org_id: IdPath,
        entity_id: IdPath,
        data: JSONBody[CommandCreate],
        commands: NamedDependency[CommandService],
    ) -> CommandView:
        """Send a command; 202 with its id and status (``queued`` or ``delivered``)."""
        actor = await authorize(request, org_id, "commands")
        return await commands.send(org_id, entity_id, data, actor)

    @get("/{entity_id:str}/commands", responses=ERRORS)
    async def list_commands(
        self,
        request: Req,
        org_id: IdPath,
        entity_id: IdPath,
        commands: NamedDependency[CommandService],
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[CommandView]:
        """Commands sent to the entity, newest first, with their status."""
        await authorize(request, org_id, "read")
        items, total = await commands.list_for(org_id, entity_id, limit, offset)
        return Page(items=items, total=total, limit=limit, offset=offset)

    @get("/{entity_id:str}/commands/{command_id:str}", responses=ERRORS)
    async def get_command(
        self,
        request: Req,
        org_id: IdPath,
        entity_id: IdPath,
        command_id: IdPath,
        commands: NamedDependency[CommandService],
    ) -> CommandView:
        """One command and its status."""
        await authorize(request, org_id, "read")
        return await commands.get(org_id, entity_id, command_id)

    @get("/{entity_id:str}/detections", responses=ERRORS)
    async def list_detections(
        self,
        request: Req,
        org_id: IdPath,
        entity_id: IdPath,
        detections: NamedDependency[DetectionService],
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> Page[DetectionView]:
        """Detection events of the entity, newest first."""
        await authorize(request, org_id, "read")
        rows, total = await detections.page(org_id, entity_id, limit, offset)
        return Page(items=[detection_view(r) for r in rows], total=total, limit=limit, offset=offset)

    @get("/{entity_id:str}/alerts", responses=ERRORS)
    async def list_alerts(
        self,
        request: Req,
        org_id: IdPath,
        entity_id: IdPath,
        alerts: NamedDependency[AlertService],
        limit: Limit = 100,
        offset: Offset = 0,
        status: Annotated[str | None, QueryParameter(pattern="^(active|cleared)$")] = None,
    ) -> Page[AlertView]:
        """Alerts of the entity (threat, offline, battery, device), newest first."""
        await authorize(request, org_id, "read")
        rows, total = await alerts.of_entity(org_id, entity_id, status, limit, offset)
        return Page(items=[alert_view(r) for r in rows], total=total, limit=limit, offset=offset)

    @get("/{entity_id:str}/track", responses=ERRORS)
    async def get_track(
        self,
        request: Req,
        org_id: IdPath,
        entity_id: IdPath,
        tracks: NamedDependency[TrackService],
        minutes: Annotated[float, QueryParameter(gt=0, le=24 * 60)] = 30.0,
    ) -> list[TrackPointView]:
        """Stored positions of the last ``minutes`` as ``[ts, lat, lon, alt, heading, speed]`` rows."""
        await authorize(request, org_id, "read")
        points = await tracks.recent(org_id, entity_id, time.time() - minutes * 60)
        return [as_view(p, TrackPointView) for p in points]


def stored_response(state: StoredState) -> Response[dict[str, Any]]:
    """The stored EntityState as the body, its KV revision in a header."""
    return Response(state.value, headers={"KV-Revision": str(state.revision)})
