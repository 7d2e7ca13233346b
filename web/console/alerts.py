"""The alerts page: threat, offline, battery, device and rule alerts, with acknowledgement."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.response import Redirect, ServerSentEvent, Template

from app.runtime import Runtime
from core.contracts.common import utc_now
from core.errors import NotFound
from db import alerts as alerts_db
from db import rules as rules_db
from services.hub import Update
from web.api.params import KeyPath
from web.api.views import alert_view
from web.auth.guards import authorize, principal_of, requires
from web.sse.live import Messages, event, page_stream

Req = Request[Any, Any, Any]
Status = Annotated[str, QueryParameter(pattern="^(active|cleared|all)$")]
Kind = Annotated[str, QueryParameter(pattern="^(|threat|offline|battery|device|rule)$")]
PAGE = 100


async def _context(request: Req, runtime: Runtime, status: str, kind: str) -> dict[str, Any]:
    principal = principal_of(request)
    filters: dict[str, Any] = {
        "status": None if status == "all" else status,
        "kind": kind or None,
        "org_ids": principal.visible_orgs,
    }
    rows = await alerts_db.list_alerts(runtime.db, limit=PAGE, **filters)
    return {
        "alerts": [alert_view(r) for r in rows],
        "total": await alerts_db.count_alerts(runtime.db, **filters),
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
        self, request: Req, runtime: NamedDependency[Runtime], status: Status = "active", kind: Kind = ""
    ) -> Template:
        """Alerts, newest first (active by default)."""
        ctx = await _context(request, runtime, status, kind)
        return Template("pages/alerts.html", context={**ctx, "active": "alerts"})

    @get("/events/alerts")
    async def alerts_events(
        self, request: Req, runtime: NamedDependency[Runtime], status: Status = "active", kind: Kind = ""
    ) -> ServerSentEvent:
        """The alert list, re-rendered when alerts change."""

        async def resync() -> Messages:
            return [event(runtime, request, "alert-list", await _context(request, runtime, status, kind))]

        async def render(_batch: Sequence[Update]) -> Messages:
            return await resync()

        return page_stream(request, runtime, {"alerts"}, resync, render, max_fps=2.0)

    @post("/alerts/{alert_id:str}/ack")
    async def acknowledge(
        self, request: Req, alert_id: KeyPath, runtime: NamedDependency[Runtime]
    ) -> Template | Redirect:
        """Acknowledge (operators and admins of the alert's organisation; audited)."""
        row = await alerts_db.get_alert(runtime.db, alert_id)
        if row is None:
            raise NotFound(f"alert {alert_id} not found")
        actor = await authorize(request, row.org_id, "commands")
        updated = await runtime.services.alerts.acknowledge(alert_id, actor.label)
        if row.kind == "rule":  # the rule's firing history shows the same acknowledgement
            await rules_db.acknowledge_events(runtime.db, alert_id, actor.label, utc_now())
        await runtime.services.audit.record(actor, "alert.acknowledge", target=alert_id, org_id=row.org_id)
        if not getattr(request, "htmx", False):
            return Redirect("/alerts", status_code=303)
        return Template("partials/alert-row.html", context={"a": alert_view(updated), "can_ack": True})
