"""The alerts page: threat, offline, battery, device and rule alerts, with acknowledgement."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.response import Redirect, ServerSentEvent, Template

from core.topics import Topic
from services.alerts.store import AlertService
from services.hub import Update
from web.api.params import KeyPath
from web.api.views import alert_view
from web.auth.guards import authorize, principal_of, requires
from web.sse.live import LiveStreams, Messages

Req = Request[Any, Any, Any]
Status = Annotated[str, QueryParameter(pattern="^(active|cleared|all)$")]
Kind = Annotated[str, QueryParameter(pattern="^(|threat|offline|battery|device|rule)$")]
PAGE = 100


async def _context(request: Req, alerts: AlertService, status: str, kind: str) -> dict[str, Any]:
    principal = principal_of(request)
    rows, total = await alerts.page(
        org_ids=principal.visible_orgs, status=None if status == "all" else status, kind=kind or None, limit=PAGE
    )
    return {
        "alerts": [alert_view(r) for r in rows],
        "total": total,
        "status": status,
        "kind": kind,
        "can_ack_orgs": principal.org_ids,
        "can_ack": principal.can("commands"),
    }


class AlertsController(Controller):
    """``/alerts``, its stream, and acknowledging from the page."""

    include_in_schema = False
    guards = [requires("read")]

    @get("/alerts")
    async def alerts(
        self, request: Req, alerts: NamedDependency[AlertService], status: Status = "active", kind: Kind = ""
    ) -> Template:
        """Alerts, newest first (active by default)."""
        ctx = await _context(request, alerts, status, kind)
        return Template("pages/alerts.html", context={**ctx, "active": "alerts"})

    @get("/events/alerts")
    async def alerts_events(
        self,
        request: Req,
        alerts: NamedDependency[AlertService],
        live: NamedDependency[LiveStreams],
        status: Status = "active",
        kind: Kind = "",
    ) -> ServerSentEvent:
        """The alert list, re-rendered when alerts change."""

        async def resync() -> Messages:
            return [live.event(request, "alert-list", await _context(request, alerts, status, kind))]

        async def render(_batch: Sequence[Update]) -> Messages:
            return await resync()

        return live.page_stream(request, {Topic.ALERTS}, resync, render, max_fps=2.0)

    @post("/alerts/{alert_id:str}/ack")
    async def acknowledge(
        self, request: Req, alert_id: KeyPath, alerts: NamedDependency[AlertService]
    ) -> Template | Redirect:
        """Acknowledge (operators and admins of the alert's organisation; audited)."""
        row = await alerts.get(alert_id)
        actor = await authorize(request, row.org_id, "commands")
        updated = await alerts.acknowledge(actor, alert_id) or row
        if not getattr(request, "htmx", False):
            return Redirect("/alerts", status_code=303)
        return Template("partials/alert-row.html", context={"a": alert_view(updated), "can_ack": True})
