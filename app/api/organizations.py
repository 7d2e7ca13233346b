"""``/api/v1/organizations``: create, list, read, update, delete organisations."""

from __future__ import annotations

from litestar import Controller, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_201_CREATED

from app.api.params import Limit, Offset
from app.api.schemas import Deleted, OrgCreate, OrgUpdate, Page
from app.contracts.registry import OrgRecord
from app.runtime import Runtime


class OrganizationController(Controller):
    """Organisations (registry; NATS is the source of truth)."""

    path = "/api/v1/organizations"
    tags = ["organizations"]

    @post("/", status_code=HTTP_201_CREATED)
    async def create_organization(self, data: JSONBody[OrgCreate], runtime: NamedDependency[Runtime]) -> OrgRecord:
        """Create an organisation; returns it with its ``org_id``."""
        return await runtime.services.registry.create_org(data)

    @get("/")
    async def list_organizations(
        self, runtime: NamedDependency[Runtime], limit: Limit = 100, offset: Offset = 0
    ) -> Page[OrgRecord]:
        """A page of organisations, by name."""
        return await runtime.services.registry.list_orgs(limit, offset)

    @get("/{org_id:str}")
    async def get_organization(self, org_id: FromPath[str], runtime: NamedDependency[Runtime]) -> OrgRecord:
        """One organisation."""
        return await runtime.services.registry.get_org(org_id)

    @put("/{org_id:str}")
    async def update_organization(
        self, org_id: FromPath[str], data: JSONBody[OrgUpdate], runtime: NamedDependency[Runtime]
    ) -> OrgRecord:
        """Change the given fields of an organisation."""
        return await runtime.services.registry.update_org(org_id, data)

    @delete("/{org_id:str}", status_code=200)
    async def delete_organization(self, org_id: FromPath[str], runtime: NamedDependency[Runtime]) -> Response[Deleted]:
        """Delete an organisation and all its entities."""
        await runtime.services.registry.delete_org(org_id)
        return Response(Deleted(message="Organization deleted successfully"))
