"""The application services, built once per process after the runtime has started."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from jinja2 import Environment

from app.alerts import AlertService
from app.audit import AuditService
from app.auth.apikeys import ApiKeyService
from app.auth.ratelimit import IpLimiter
from app.auth.sessions import SessionService
from app.auth.users import UserService
from app.commands import CommandService
from app.console.data import ConsoleData
from app.console.live import RenderCache
from app.directory import EntityOrgs
from app.nats_auth import NatsAuthManager
from app.registry import RegistryService
from app.state_cache import StateCache
from app.templating import build_environment
from app.video import VideoRegistry
from workers.state_store import StateStore

if TYPE_CHECKING:
    from app.runtime import Runtime


@dataclass
class Services:
    """Everything handlers and workers call into (one instance per process)."""

    registry: RegistryService
    templates: Environment
    alerts: AlertService
    state_cache: StateCache
    commands: CommandService
    video: VideoRegistry
    audit: AuditService
    users: UserService
    sessions: SessionService
    apikeys: ApiKeyService
    login_limiter: IpLimiter
    nats_auth: NatsAuthManager | None
    console: ConsoleData
    render_cache: RenderCache


def build_services(rt: Runtime) -> Services:
    """Construct every service from the started runtime's connections."""
    assert rt.nc is not None
    cache = StateCache(rt.nc, rt.kv_state, rt.hub, EntityOrgs(rt.db, rt.hub))
    audit = AuditService(rt.db)
    return Services(
        registry=RegistryService(rt.kv_registry, rt.js, rt.db, rt.hub, audit),
        templates=build_environment(),
        alerts=AlertService(rt.db, rt.hub),
        state_cache=cache,
        commands=CommandService(
            rt.db,
            rt.js,
            StateStore(rt.kv_state, "commands"),
            cache,
            rt.hub,
            rt.settings.command_ttl,
            audit,
            node_id=rt.node_id,
        ),
        video=VideoRegistry(),
        audit=audit,
        users=UserService(rt.db, audit, rt.settings),
        sessions=SessionService(rt.db, rt.settings, rt.secret),
        apikeys=ApiKeyService(rt.db, audit, rt.secret),
        login_limiter=IpLimiter(),
        nats_auth=NatsAuthManager(rt) if rt.settings.embedded_nats else None,
        console=ConsoleData(rt.db, cache, rt.hub),
        render_cache=RenderCache(),
    )
