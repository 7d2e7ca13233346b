"""The overview page: analytics counters, system status and a card per entity."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.response import ServerSentEvent, Template

from app.runtime import Runtime
from services.console.cards import entity_card
from services.hub import Update
from web.auth.guards import principal_of, requires
from web.console.status import SYSTEM_TOPIC, system_status
from web.sse.live import Messages, cached_event, event, page_stream

Req = Request[Any, Any, Any]
SUMMARY_EVERY = 1.0  # seconds: the counters are recomputed over all entities at most this often per stream


async def _context(request: Req, runtime: Runtime) -> dict[str, Any]:
    orgs = principal_of(request).visible_orgs
    data = runtime.services.console
    return {
        "summary": await data.summary(orgs),
        "cards": data.cards(orgs),
        "status": await system_status(runtime, orgs),
    }


def _card_context(view: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    return lambda: {"card": entity_card(view)}


class OverviewController(Controller):
    """``/`` and ``/events/overview``."""

    include_in_schema = False
    guards = [requires("read")]

    @get("/")
    async def overview(self, request: Req, runtime: NamedDependency[Runtime]) -> Template:
        """The overview page."""
        return Template("pages/overview.html", context={**await _context(request, runtime), "active": "overview"})

    @get("/events/overview")
    async def overview_events(self, request: Req, runtime: NamedDependency[Runtime]) -> ServerSentEvent:
        """Live updates of the overview's regions."""
        principal = principal_of(request)
        last_summary = [0.0]

        async def resync() -> Messages:
            ctx = await _context(request, runtime)
            return [
                event(runtime, request, "fleet-summary", ctx),
                event(runtime, request, "system-status", ctx),
                event(runtime, request, "entity-cards", ctx),
            ]

        async def render(batch: Sequence[Update]) -> Messages:
            topics = {u.topic for u in batch}
            orgs = principal.visible_orgs
            data = runtime.services.console
            out: Messages = []
            if "registry" in topics:
                out.append(event(runtime, request, "entity-cards", {"cards": data.cards(orgs)}))
            else:
                for update in batch:
                    view = runtime.services.state_cache.get(update.key) if update.topic == "state" else None
                    if view is not None and "." not in update.key and principal.sees(str(view.get("org_id") or "")):
                        out.append(cached_event(runtime, "entity-card", update.key, _card_context(view)))
            if topics & {"registry", "detections"} or (
                "state" in topics and time.monotonic() - last_summary[0] >= SUMMARY_EVERY
            ):
                last_summary[0] = time.monotonic()
                out.append(event(runtime, request, "fleet-summary", {"summary": await data.summary(orgs)}))
            if topics & {"system", "registry"}:
                out.append(event(runtime, request, "system-status", {"status": await system_status(runtime, orgs)}))
            return out

        return page_stream(request, runtime, {"state", "registry", "detections", SYSTEM_TOPIC}, resync, render)
