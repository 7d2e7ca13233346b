"""The overview page: analytics counters, system status and a card per entity."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.response import ServerSentEvent, Template

from core.topics import Topic
from services.console.cards import entity_card
from services.console.figures import ConsoleData
from services.hub import Update
from services.state_view import EntityView
from web.auth.guards import principal_of, requires
from web.sse.live import LiveStreams, Messages

Req = Request[Any, Any, Any]
SUMMARY_EVERY = 1.0  # seconds: the counters are recomputed over all entities at most this often per stream


async def _context(request: Req, console: ConsoleData) -> dict[str, Any]:
    orgs = principal_of(request).visible_orgs
    return {
        "summary": await console.summary(orgs),
        "cards": console.cards(orgs),
        "status": await console.system_status(orgs),
    }


def _card_context(view: EntityView) -> Callable[[], dict[str, Any]]:
    return lambda: {"card": entity_card(view)}


class OverviewController(Controller):
    """``/`` and ``/events/overview``."""

    include_in_schema = False
    guards = [requires("read")]

    @get("/")
    async def overview(self, request: Req, console: NamedDependency[ConsoleData]) -> Template:
        """The overview page."""
        return Template("pages/overview.html", context={**await _context(request, console), "active": "overview"})

    @get("/events/overview")
    async def overview_events(
        self, request: Req, console: NamedDependency[ConsoleData], live: NamedDependency[LiveStreams]
    ) -> ServerSentEvent:
        """Live updates of the overview's regions."""
        principal = principal_of(request)
        last_summary = [0.0]

        async def resync() -> Messages:
            ctx = await _context(request, console)
            return [
                live.event(request, "fleet-summary", ctx),
                live.event(request, "system-status", ctx),
                live.event(request, "entity-cards", ctx),
            ]

        async def render(batch: Sequence[Update]) -> Messages:
            topics = {u.topic for u in batch}
            orgs = principal.visible_orgs
            out: Messages = []
            if Topic.REGISTRY in topics:
                out.append(live.event(request, "entity-cards", {"cards": console.cards(orgs)}))
            else:
                for update in batch:
                    view = console.view(update.key) if update.topic == Topic.STATE else None
                    if view is not None and "." not in update.key and principal.sees(view.org_id):
                        out.append(live.cached_event("entity-card", update.key, _card_context(view)))
            if topics & {Topic.REGISTRY, Topic.DETECTIONS} or (
                Topic.STATE in topics and time.monotonic() - last_summary[0] >= SUMMARY_EVERY
            ):
                last_summary[0] = time.monotonic()
                out.append(live.event(request, "fleet-summary", {"summary": await console.summary(orgs)}))
            if topics & {Topic.SYSTEM, Topic.REGISTRY}:
                out.append(live.event(request, "system-status", {"status": await console.system_status(orgs)}))
            return out

        return live.page_stream(request, {Topic.STATE, Topic.REGISTRY, Topic.DETECTIONS, Topic.SYSTEM}, resync, render)
