"""``/api/v1/organizations/{org_id}/entities``: entities, their state, commands, detections, alerts."""

from __future__ import annotations

import time
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_202_ACCEPTED
from nats.js.errors import KeyNotFoundError

from app.runtime import Runtime
from core.contracts.registry import EntityRecord
from core.errors import NotFound
from db import alerts as alerts_db
from db import detections as detections_db
from db import tracks as tracks_db
from services.schemas import CommandCreate, CommandView, Deleted, EntityCreate, EntityUpdate, Page
from web.api.params import ERRORS, IdPath, Limit, Offset
from web.api.schemas import AlertView, DetectionView, TrackPointView
from web.api.views import alert_view, detection_view
from web.auth.guards import authorize, requires

Req = Request[Any, Any, Any]


class EntityController(Controller):
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
        runtime: NamedDependency[Runtime],
    ) -> EntityRecord:
        """Register an entity under an organisation; returns it with its ``entity_id``."""
        actor = await authorize(request, org_id, "admin")
        return await runtime.services.registry.create_entity(org_id, data, actor)

    @get("/", responses=ERRORS)
    async def list_entities(
        self,
        request: Req,
        org_id: IdPath,
        runtime: NamedDependency[Runtime],
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> Page[EntityRecord]:
        """A page of the organisation's entities, by name."""
        await authorize(request, org_id, "read")
        return await runtime.services.registry.list_entities(org_id, limit, offset)

    @get("/{entity_id:str}", responses=ERRORS)
    async def get_entity(
        self,
        request: Req,
        org_id: IdPath,
        entity_id: IdPath,
        runtime: NamedDependency[Runtime],
    ) -> EntityRecord:
        """One entity's registry record."""
        await authorize(request, org_id, "read")
        return await runtime.services.registry.get_entity(org_id, entity_id)

    @put("/{entity_id:str}", responses=ERRORS)
    async def update_entity(
        self,
        request: Req,
        org_id: IdPath,
        entity_id: IdPath,
        data: JSONBody[EntityUpdate],
        runtime: NamedDependency[Runtime],
    ) -> EntityRecord:
        """Change the given fields of an entity."""
        actor = await authorize(request, org_id, "admin")
        return await runtime.services.registry.update_entity(org_id, entity_id, data, actor)

    @delete("/{entity_id:str}", status_code=200, responses=ERRORS)
    async def delete_entity(
        self,
        request: Req,
        org_id: IdPath,
        entity_id: IdPath,
        runtime: NamedDependency[Runtime],
    ) -> Response[Deleted]:
        """Delete an entity (registry record and state)."""
        actor = await authorize(request, org_id, "admin")
        await runtime.services.registry.delete_entity(org_id, entity_id, actor)
        return Response(Deleted(message="Entity deleted successfully"))

    @get("/{entity_id:str}/state", responses=ERRORS)
    async def get_state(
        self,
        request: Req,
        org_id: IdPath,
        entity_id: IdPath,
        runtime: NamedDependency[Runtime],
    ) -> Response[dict[str, Any]]:
        """The EntityState exactly as stored in ``CONSTELLATION_GLOBAL_STATE``."""
        await authorize(request, org_id, "read")
        await runtime.services.registry.get_entity(org_id, entity_id)
        return await stored_state(runtime, entity_id)

    @post("/{entity_id:str}/commands", status_code=HTTP_202_ACCEPTED, responses=ERRORS)
    async def send_command(
        self,
        request: Req,
        org_id: IdPath,
        entity_id: IdPath,
        data: JSONBody[CommandCreate],
        runtime: NamedDependency[Runtime],
    ) -> CommandView:
        """Send a command; 202 with its id and status (``queued`` or ``delivered``)."""
        actor = await authorize(request, org_id, "commands")
        return await runtime.services.commands.send(org_id, entity_id, data, actor)

    @get("/{entity_id:str}/commands", responses=ERRORS)
    async def list_commands(
        self,
        request: Req,
        org_id: IdPath,
        entity_id: IdPath,
        runtime: NamedDependency[Runtime],
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[CommandView]:
        """Commands sent to the entity, newest first, with their status."""
        await authorize(request, org_id, "read")
        items, total = await runtime.services.commands.list_for(org_id, entity_id, limit, offset)
        return Page(items=items, total=total, limit=limit, offset=offset)

    @get("/{entity_id:str}/commands/{command_id:str}", responses=ERRORS)
    async def get_command(
        self,
        request: Req,
        org_id: IdPath,
        entity_id: IdPath,
        command_id: IdPath,
        runtime: NamedDependency[Runtime],
    ) -> CommandView:
        """One command and its status."""
        await authorize(request, org_id, "read")
        return await runtime.services.commands.get(org_id, entity_id, command_id)

    @get("/{entity_id:str}/detections", responses=ERRORS)
    async def list_detections(
        self,
        request: Req,
        org_id: IdPath,
        entity_id: IdPath,
        runtime: NamedDependency[Runtime],
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> Page[DetectionView]:
        """Detection events of the entity, newest first."""
        await authorize(request, org_id, "read")
        await runtime.services.registry.get_entity(org_id, entity_id)
        rows = await detections_db.list_detections(runtime.db, entity_id, limit, offset)
        total = await detections_db.count_detections(runtime.db, entity_id)
        return Page(items=[detection_view(r) for r in rows], total=total, limit=limit, offset=offset)

    @get("/{entity_id:str}/alerts", responses=ERRORS)
    async def list_alerts(
        self,
        request: Req,
        org_id: IdPath,
        entity_id: IdPath,
        runtime: NamedDependency[Runtime],
        limit: Limit = 100,
        offset: Offset = 0,
        status: Annotated[str | None, QueryParameter(pattern="^(active|cleared)$")] = None,
    ) -> Page[AlertView]:
        """Alerts of the entity (threat, offline, battery, device), newest first."""
        await authorize(request, org_id, "read")
        await runtime.services.registry.get_entity(org_id, entity_id)
        rows = await alerts_db.list_alerts(runtime.db, status=status, entity_id=entity_id, limit=limit, offset=offset)
        total = await alerts_db.count_alerts(runtime.db, status=status, entity_id=entity_id)
        return Page(items=[alert_view(r) for r in rows], total=total, limit=limit, offset=offset)

    @get("/{entity_id:str}/track", responses=ERRORS)
    async def get_track(
        self,
        request: Req,
        org_id: IdPath,
        entity_id: IdPath,
        runtime: NamedDependency[Runtime],
        minutes: Annotated[float, QueryParameter(gt=0, le=24 * 60)] = 30.0,
    ) -> list[TrackPointView]:
        """Stored positions of the last ``minutes`` as ``[ts, lat, lon, alt, heading, speed]`` rows."""
        await authorize(request, org_id, "read")
        await runtime.services.registry.get_entity(org_id, entity_id)
        points = await tracks_db.recent_track(runtime.db, entity_id, time.time() - minutes * 60)
        return [
            TrackPointView(
                ts=p.ts,
                latitude=p.latitude,
                longitude=p.longitude,
                altitude=p.altitude,
                heading=p.heading,
                speed=p.speed,
            )
            for p in points
        ]


async def stored_state(runtime: Runtime, entity_id: IdPath) -> Response[dict[str, Any]]:
    """The raw stored EntityState bytes with the KV revision in a header (404 if none yet)."""
    try:
        entry = await runtime.kv_state.get(entity_id)
    except KeyNotFoundError:
        raise NotFound(f"no state stored for entity {entity_id} yet") from None
    value = msgspec.json.decode(entry.value or b"{}")
    return Response(value if isinstance(value, dict) else {}, headers={"KV-Revision": str(entry.revision or 0)})
