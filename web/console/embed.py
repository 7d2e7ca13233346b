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
from services.console.cards import entity_card, tracked_objects
from services.console.entity_page import EntityPage
from services.console.fleet import FleetPage
from services.hub import Update
from web.api.params import IdPath
from web.auth.guards import LoginRequired, deny, principal_of
from web.console.entity import EntityPageData
from web.console.fleet import FleetQuery, fleet_rows
from web.console.video import may_view
from web.sse.live import LiveStreams, Messages, context_of

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
        shown: list[object] = [None]  # the boxes and camera the overlay last showed

        def regions(everything: bool) -> Messages:
            # Each region gets only what it shows, built only when it is rendered (once per state
            # version for every stream); boxes that did not change are not sent again.
            view = entity_page.view(entity_id)
            card = entity_card(view)
            video = entity_page.video_source(entity_id)
            out = [live.cached_event("entity-header", entity_id, context_of(card=card))]
            if everything or shown[0] != (view.objects, video):
                shown[0] = (view.objects, video)
                out.append(
                    live.cached_event(
                        "video-overlay",
                        entity_id,
                        lambda: {"card": card, "objects": tracked_objects(view), "video": video},
                    )
                )
            doc = entity_page.doc(entity_id)
            out.append(live.cached_event("entity-telemetry", entity_id, context_of(card=card, view=doc)))
            return out

        async def resync() -> Messages:
            return regions(True)

        async def render(batch: Sequence[Update]) -> Messages:
            return regions(False) if any(u.key == entity_id for u in batch) else []

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
