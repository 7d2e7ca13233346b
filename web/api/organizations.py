"""``/api/v1/organizations``: create, list, read, update, delete organisations."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import JSONBody
from litestar.status_codes import HTTP_201_CREATED

from core.contracts.registry import OrgRecord
from services.registry import RegistryService
from services.schemas import Deleted, OrgCreate, OrgUpdate, Page
from web.api.params import ERRORS, IdPath, Limit, Offset
from web.auth.guards import authorize, principal_of, requires, requires_global_admin

Req = Request[Any, Any, Any]


class OrganizationsApiController(Controller):
    """Organisations (registry; NATS is the source of truth). Reading needs ``read``;
    creating and deleting needs an admin over every organisation; updating, admin in it."""

    path = "/api/v1/organizations"
    tags = ["organizations"]
    guards = [requires("read")]

    @post("/", status_code=HTTP_201_CREATED, guards=[requires_global_admin()], responses=ERRORS)
    async def create_organization(
        self, request: Req, data: JSONBody[OrgCreate], registry: NamedDependency[RegistryService]
    ) -> OrgRecord:
        """Create an organisation; returns it with its ``org_id``."""
        return await registry.create_org(data, await authorize(request, None, "admin"))

    @get("/", responses=ERRORS)
    async def list_organizations(
        self, request: Req, registry: NamedDependency[RegistryService], limit: Limit = 100, offset: Offset = 0
    ) -> Page[OrgRecord]:
        """A page of the organisations the caller may see, by name."""
        return await registry.list_orgs(limit, offset, principal_of(request).visible_orgs)

    @get("/{org_id:str}", responses=ERRORS)
    async def get_organization(
        self, request: Req, org_id: IdPath, registry: NamedDependency[RegistryService]
    ) -> OrgRecord:
        """One organisation."""
        await authorize(request, org_id, "read")
        return await registry.get_org(org_id)

    @put("/{org_id:str}", responses=ERRORS)
    async def update_organization(
        self, request: Req, org_id: IdPath, data: JSONBody[OrgUpdate], registry: NamedDependency[RegistryService]
    ) -> OrgRecord:
        """Change the given fields of an organisation."""
        actor = await authorize(request, org_id, "admin")
        return await registry.update_org(org_id, data, actor)

    @delete("/{org_id:str}", status_code=200, guards=[requires_global_admin()], responses=ERRORS)
    async def delete_organization(
        self, request: Req, org_id: IdPath, registry: NamedDependency[RegistryService]
    ) -> Response[Deleted]:
        """Delete an organisation and all its entities."""
        await registry.delete_org(org_id, await authorize(request, org_id, "admin"))
        return Response(Deleted(message="Organization deleted successfully"))
