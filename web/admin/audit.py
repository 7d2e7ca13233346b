"""``/admin/audit``: the audit log with filters, paging and CSV/JSON export."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any
from urllib.parse import urlencode

import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency, Provide
from litestar.params import QueryParameter
from litestar.response import Template

from db.audit import AuditRow
from services.audit import AuditFilters, AuditService
from web.auth.guards import requires_global_admin

PAGE = 50
EXPORT_MAX = 100_000
Text = Annotated[str, QueryParameter(max_length=200)]
Outcome = Annotated[str, QueryParameter(pattern="^(|success|denied|failure)$")]


def _filters(
    actor: Text = "", action: Text = "", outcome: Outcome = "", since: Text = "", until: Text = "", text: Text = ""
) -> AuditFilters:
    """The audit log filters of the query string (the ``filters`` dependency of the exports)."""
    return AuditFilters(actor=actor, action=action, outcome=outcome, since=since, until=until, text=text)


class AuditController(Controller):
    """Audit log viewer (admins over every organisation only)."""

    path = "/admin/audit"
    include_in_schema = False
    guards = [requires_global_admin()]
    dependencies = {"filters": Provide(_filters, sync_to_thread=False)}

    @get("/")
    async def audit(
        self,
        audit: NamedDependency[AuditService],
        actor: Text = "",
        action: Text = "",
        outcome: Outcome = "",
        since: Text = "",
        until: Text = "",
        text: Text = "",
        page: Annotated[int, QueryParameter(ge=1, le=100_000)] = 1,
    ) -> Template:
        """Filtered, paged audit entries, newest first."""
        # The filters are declared here, not taken as the dependency: a bad filter and a bad page are reported together.
        filters = _filters(actor, action, outcome, since, until, text)
        rows = await audit.search(filters, PAGE, (page - 1) * PAGE)
        total = await audit.count(filters)
        # Filter values are free text: encoded so "&", "#" or "%" cannot change the paging links.
        query = urlencode({k: v for k, v in msgspec.structs.asdict(filters).items() if v})
        return Template(
            "pages/admin/audit.html",
            context={
                "rows": rows,
                "total": total,
                "page": page,
                "pages": max(1, -(-total // PAGE)),
                "filters": filters,
                "query": query,
                "active": "admin",
                "tab": "audit",
            },
        )

    @get("/export.json")
    async def export_json(
        self, audit: NamedDependency[AuditService], filters: NamedDependency[AuditFilters]
    ) -> Response[bytes]:
        """The filtered entries as a JSON array (at most 100,000)."""
        rows = await audit.search(filters, EXPORT_MAX)
        return Response(
            msgspec.json.encode(rows),
            media_type="application/json",
            headers={"Content-Disposition": 'attachment; filename="audit.json"'},
        )

    @get("/export.csv")
    async def export_csv(
        self, audit: NamedDependency[AuditService], filters: NamedDependency[AuditFilters]
    ) -> Response[str]:
        """The filtered entries as CSV (at most 100,000)."""
        rows = await audit.search(filters, EXPORT_MAX)
        out = io.StringIO()
        writer = csv.writer(out)
        fields = list(AuditRow.__struct_fields__)
        writer.writerow(fields)
        for row in rows:
            # A leading = + - @ would make a spreadsheet evaluate the cell.
            writer.writerow([_cell(getattr(row, f)) for f in fields])
        return Response(
            out.getvalue(), media_type="text/csv", headers={"Content-Disposition": 'attachment; filename="audit.csv"'}
        )


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value
