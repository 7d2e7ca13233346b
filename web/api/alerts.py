"""``/api/v1/alerts``: list alerts of the caller's organisations, acknowledge one."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery, QueryParameter

from app.runtime import Runtime
from core.errors import NotFound
from db import alerts as alerts_db
from services.schemas import Page
from web.api.params import ERRORS, KeyPath, Limit, Offset
from web.api.schemas import AlertView
from web.api.views import alert_view
from web.auth.guards import authorize, principal_of, requires

Req = Request[Any, Any, Any]


class AlertController(Controller):
    """Threat, offline, battery, device and rule alerts."""

    path = "/api/v1/alerts"
    tags = ["alerts"]
    guards = [requires("read")]

    @get("/", responses=ERRORS)
    async def list_alerts(
        self,
        request: Req,
        runtime: NamedDependency[Runtime],
        limit: Limit = 100,
        offset: Offset = 0,
        status: Annotated[str | None, QueryParameter(pattern="^(active|cleared)$")] = None,
        kind: Annotated[str | None, QueryParameter(pattern="^(threat|offline|battery|device|rule)$")] = None,
        unacknowledged: FromQuery[bool] = False,
    ) -> Page[AlertView]:
        """Alerts of the caller's organisations, newest first."""
        orgs = principal_of(request).visible_orgs
        filters: dict[str, Any] = {"status": status, "kind": kind, "org_ids": orgs, "unacknowledged": unacknowledged}
        rows = await alerts_db.list_alerts(runtime.db, limit=limit, offset=offset, **filters)
        total = await alerts_db.count_alerts(runtime.db, **filters)
        return Page(items=[alert_view(r) for r in rows], total=total, limit=limit, offset=offset)

    @post("/{alert_id:str}/ack", status_code=200, responses=ERRORS)
    async def acknowledge(self, request: Req, alert_id: KeyPath, runtime: NamedDependency[Runtime]) -> AlertView:
        """Acknowledge an alert (operators and admins of its organisation)."""
        row = await alerts_db.get_alert(runtime.db, alert_id)
        if row is None:
            raise NotFound(f"alert {alert_id} not found")
        actor = await authorize(request, row.org_id, "commands")
        updated = await runtime.services.alerts.acknowledge(alert_id, actor.label)
        await runtime.services.audit.record(actor, "alert.acknowledge", target=alert_id, org_id=row.org_id)
        return alert_view(updated)
