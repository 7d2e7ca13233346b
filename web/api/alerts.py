"""``/api/v1/alerts``: list alerts of the caller's organisations, acknowledge one."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery, QueryParameter

from services.alerts.store import AlertService
from services.schemas import Page
from web.api.params import ERRORS, KeyPath, Limit, Offset
from web.api.schemas import AlertView
from web.api.views import alert_view
from web.auth.guards import authorize, principal_of, requires

Req = Request[Any, Any, Any]


class AlertsApiController(Controller):
    """Threat, offline, battery, device and rule alerts."""

    path = "/api/v1/alerts"
    tags = ["alerts"]
    guards = [requires("read")]

    @get("/", responses=ERRORS)
    async def list_alerts(
        self,
        request: Req,
        alerts: NamedDependency[AlertService],
        limit: Limit = 100,
        offset: Offset = 0,
        status: Annotated[str | None, QueryParameter(pattern="^(active|cleared)$")] = None,
        kind: Annotated[str | None, QueryParameter(pattern="^(threat|offline|battery|device|rule)$")] = None,
        unacknowledged: FromQuery[bool] = False,
    ) -> Page[AlertView]:
        """Alerts of the caller's organisations, newest first."""
        rows, total = await alerts.page(
            org_ids=principal_of(request).visible_orgs,
            status=status,
            kind=kind,
            unacknowledged=unacknowledged,
            limit=limit,
            offset=offset,
        )
        return Page(items=[alert_view(r) for r in rows], total=total, limit=limit, offset=offset)

    @post("/{alert_id:str}/ack", status_code=200, responses=ERRORS)
    async def acknowledge(self, request: Req, alert_id: KeyPath, alerts: NamedDependency[AlertService]) -> AlertView:
        """Acknowledge an alert (operators and admins of its organisation)."""
        row = await alerts.get(alert_id)
        actor = await authorize(request, row.org_id, "commands")
        return alert_view(await alerts.acknowledge(actor, alert_id) or row)
