"""Embeds for other systems' pages: ``/embed/entity/{id}`` and ``/embed/fleet``.

Minimal chrome, the same partials as the console, framable by the origins in
``OVERWATCH_EMBED_ORIGINS``. An admin can make an embed public (no sign-in); since the
session cookie is ``SameSite=Strict``, an iframe on another site only works for
public embeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.response import ServerSentEvent, Template

from core.topics import Topic
from services.console.entity_page import EntityPage
from services.console.fleet import FleetPage
from services.hub import Update
from web.api.params import IdPath
from web.auth.guards import LoginRequired, deny, principal_of
from web.console.entity import EntityPageData
from web.console.fleet import FleetQuery, fleet_rows
from web.console.video import may_view
from web.sse.live import LiveStreams, Messages

Req = Request[Any, Any, Any]
OrgQuery = Annotated[str, QueryParameter(pattern=r"^[A-Za-z0-9_-]{1,128}$")]


async def _fleet_access(request: Req, fleet: FleetPage, org: str) -> None:
    principal = principal_of(request)
    if principal.can_in("read", org) or await fleet.embed_public(org):
        return
    if not principal.authenticated:
        raise LoginRequired("sign in required")
    await deny(request, principal, f"no access to organization {org}", org)


class EmbedController(Controller):
    """Embeddable status widgets."""

    include_in_schema = False
    opt = {"public": True}  # access is decided per embed

    @get("/embed/entity/{entity_id:str}")
    async def entity(self, request: Req, entity_id: IdPath, entity_page: NamedDependency[EntityPage]) -> Template:
        """One entity: header, video with boxes, key telemetry."""
        await may_view(request, entity_page, entity_id)
        page = EntityPageData(entity_page, entity_id)
        return Template("pages/embed-entity.html", context={**await page.state_context(request), "active": ""})

    @get("/embed/events/entity/{entity_id:str}")
    async def entity_events(
        self,
        request: Req,
        entity_id: IdPath,
        entity_page: NamedDependency[EntityPage],
        live: NamedDependency[LiveStreams],
    ) -> ServerSentEvent:
        """Live regions of the entity embed."""
        await may_view(request, entity_page, entity_id)
        page = EntityPageData(entity_page, entity_id)
        names = ("entity-header", "video-overlay", "entity-telemetry")

        async def resync() -> Messages:
            ctx = await page.state_context(request)
            return [live.cached_event(n, entity_id, lambda: ctx) for n in names]

        async def render(batch: Sequence[Update]) -> Messages:
            return await resync() if any(u.key == entity_id for u in batch) else []

        return live.page_stream(request, {Topic.STATE}, resync, render, max_fps=5.0, keys={entity_id})

    @get("/embed/fleet")
    async def fleet(self, request: Req, fleet: NamedDependency[FleetPage], org: OrgQuery) -> Template:
        """The fleet table of one organisation."""
        await _fleet_access(request, fleet, org)
        query = FleetQuery()
        return Template(
            "pages/embed-fleet.html",
            context={"rows": fleet_rows(fleet, [org], query), "query": query, "org": org, "active": ""},
        )

    @get("/embed/events/fleet")
    async def fleet_events(
        self, request: Req, fleet: NamedDependency[FleetPage], live: NamedDependency[LiveStreams], org: OrgQuery
    ) -> ServerSentEvent:
        """Live rows of the fleet embed."""
        await _fleet_access(request, fleet, org)
        query = FleetQuery()

        async def resync() -> Messages:
            return [live.event(request, "fleet-table", {"rows": fleet_rows(fleet, [org], query), "query": query})]

        async def render(batch: Sequence[Update]) -> Messages:
            if any(u.topic == Topic.REGISTRY for u in batch):
                return await resync()
            out: Messages = []
            for update in batch:
                card = fleet.card(update.key)
                if card is not None and card.org_id == org:
                    out.append(live.event(request, "fleet-row", {"card": card}, key=card.entity_id))
            return out

        return live.page_stream(request, {Topic.STATE, Topic.REGISTRY}, resync, render, max_fps=5.0)
