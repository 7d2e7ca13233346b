"""The one guard layer used by pages, HTMX endpoints, SSE streams and the REST API.

``authenticate`` runs for every route (an app-level guard): it resolves the caller
from the session cookie or an API key (``Authorization: Bearer`` / ``X-API-Key``),
stores it on ``request.state.principal``, refuses anonymous callers unless the route
is marked ``opt={"public": True}``, and checks the CSRF token on state-changing
requests that ride on a session cookie. ``requires(permission)`` guards a route;
``ensure_org`` checks one organisation inside a handler. Every denial is audited.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from services.audit import Actor, AuditService, Origin
from services.auth.apikeys import ApiKeyService
from services.auth.principal import ANONYMOUS, Principal
from services.auth.sessions import COOKIE, SessionService

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"


class LoginRequired(NotAuthorizedException):
    """No valid credentials; pages redirect to the sign-in form, everything else gets 401."""


class Forbidden(PermissionDeniedException):
    """Authenticated but not allowed (403)."""


def origin_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Origin:
    """Client address and user agent, for the audit log."""
    client = connection.client.host if connection.client else ""
    return Origin(ip=client, user_agent=connection.headers.get("user-agent", "")[:300])


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The caller resolved by ``authenticate`` (anonymous if none)."""
    value = connection.state.get("principal")
    return value if isinstance(value, Principal) else ANONYMOUS


# Guards run outside dependency injection: ``create_app`` puts the three services they use
# into the application state under these names.
def _sessions(connection: ASGIConnection[Any, Any, Any, Any]) -> SessionService:
    sessions: SessionService = connection.app.state["sessions"]
    return sessions


def _apikeys(connection: ASGIConnection[Any, Any, Any, Any]) -> ApiKeyService:
    apikeys: ApiKeyService = connection.app.state["apikeys"]
    return apikeys


def _audit(connection: ASGIConnection[Any, Any, Any, Any]) -> AuditService:
    audit: AuditService = connection.app.state["audit"]
    return audit


def presented_key(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """An API key from ``Authorization: Bearer`` or ``X-API-Key`` (empty if none)."""
    auth = connection.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return connection.headers.get("x-api-key", "").strip()


async def authenticate(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """App-level guard: resolve the caller, require authentication, check CSRF."""
    if handler.opt.get("public") and handler.opt.get("anonymous"):
        connection.state["principal"] = ANONYMOUS  # health checks: never touch the database for credentials
        return
    sessions, audit = _sessions(connection), _audit(connection)
    principal = ANONYMOUS
    key = presented_key(connection)
    if key:
        principal = await _apikeys(connection).resolve(key) or ANONYMOUS
        if not principal.authenticated:
            connection.state["principal"] = ANONYMOUS
            await audit.record(
                "anonymous",
                "auth.apikey",
                outcome="denied",
                origin=origin_of(connection),
                target=connection.url.path,
                detail="unknown, revoked or expired API key",
            )
            raise NotAuthorizedException("invalid API key")
    else:
        token = connection.cookies.get(COOKIE, "")
        if token:
            principal = await sessions.resolve(token) or ANONYMOUS
    connection.state["principal"] = principal
    if principal.session_id:
        connection.state["csrf"] = sessions.csrf_token(principal.session_id)
    if handler.opt.get("public"):
        return
    if not principal.authenticated:
        await audit.record(
            "anonymous",
            "auth.required",
            outcome="denied",
            origin=origin_of(connection),
            target=f"{connection.scope.get('method')} {connection.url.path}",
        )
        raise LoginRequired("sign in required")
    if principal.kind == "user" and connection.scope.get("method", "GET") not in SAFE_METHODS:
        await _check_csrf(connection, principal, sessions, audit)


async def _check_csrf(
    connection: ASGIConnection[Any, Any, Any, Any], principal: Principal, sessions: SessionService, audit: AuditService
) -> None:
    token = connection.headers.get(CSRF_HEADER, "")
    if not token and "form" in connection.headers.get("content-type", ""):
        form = await connection.form()  # type: ignore[attr-defined]
        value = form.get(CSRF_FIELD, "")
        token = value if isinstance(value, str) else ""
    if not sessions.check_csrf(principal.session_id, token):
        await audit.record(
            principal,
            "auth.csrf",
            outcome="denied",
            origin=origin_of(connection),
            target=f"{connection.scope.get('method')} {connection.url.path}",
        )
        raise Forbidden("missing or invalid CSRF token: reload the page and try again")


def requires(permission: str) -> Guard:
    """A route guard: the caller must hold ``permission`` (read, commands or admin)."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        principal = principal_of(connection)
        if principal.can(permission):
            return
        await deny(connection, principal, f"needs {permission} permission")

    guard.__name__ = f"requires_{permission}"
    return guard


def requires_global_admin() -> Guard:
    """A route guard: only admins over every organisation (user management, organisations)."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        principal = principal_of(connection)
        if principal.is_global_admin:
            return
        await deny(connection, principal, "needs admin permission over every organisation")

    return guard


async def deny(
    connection: ASGIConnection[Any, Any, Any, Any], principal: Principal, why: str, org_id: str = ""
) -> None:
    """Audit a permission denial and raise 403."""
    await _audit(connection).record(
        principal,
        "auth.denied",
        outcome="denied",
        origin=origin_of(connection),
        target=f"{connection.scope.get('method')} {connection.url.path}",
        org_id=org_id,
        detail=why,
    )
    raise Forbidden(why)


async def ensure_org(connection: ASGIConnection[Any, Any, Any, Any], org_id: str, permission: str = "read") -> None:
    """Inside a handler: the caller must hold ``permission`` in ``org_id`` (403 + audit otherwise)."""
    principal = principal_of(connection)
    if principal.can_in(permission, org_id):
        return
    if not principal.sees(org_id):
        await deny(connection, principal, f"no access to organization {org_id}", org_id)
    await deny(connection, principal, f"needs {permission} permission in organization {org_id}", org_id)


async def authorize(
    connection: ASGIConnection[Any, Any, Any, Any], org_id: str | None = None, permission: str = "read"
) -> Actor:
    """Check ``permission`` (in ``org_id`` when given) and return the caller as an audit ``Actor``."""
    principal = principal_of(connection)
    if org_id is None:
        if not principal.can(permission):
            await deny(connection, principal, f"needs {permission} permission")
    else:
        await ensure_org(connection, org_id, permission)
    return Actor(principal, origin_of(connection))
