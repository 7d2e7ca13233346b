"""The application services, built once per process after the runtime has started."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from jinja2 import Environment

from fabric.state_store import StateStore
from services.alerts.service import RuleService
from services.alerts.store import AlertService
from services.audit import AuditService
from services.auth.apikeys import ApiKeyService
from services.auth.ratelimit import IpLimiter
from services.auth.sessions import SessionService
from services.auth.signin import SignInService
from services.auth.users import UserService
from services.commands import CommandService
from services.console.entity_page import EntityPage
from services.console.figures import ConsoleData
from services.console.fleet import FleetPage
from services.console.map import MapData
from services.detections import DetectionService
from services.directory import EntityOrgs
from services.embeds import EmbedService
from services.nats_auth import NatsAuthManager
from services.registry import RegistryService
from services.state_cache import StateCache
from services.state_reader import StateReader
from services.tracks import TrackService
from services.video import VideoFeeds, VideoRegistry
from web.sse.live import LiveStreams
from web.templating import build_environment

if TYPE_CHECKING:
    from app.runtime import Runtime


@dataclass
class Services:
    """Everything handlers and workers call into (one instance per process)."""

    registry: RegistryService
    templates: Environment
    alerts: AlertService
    rules: RuleService
    state_cache: StateCache
    commands: CommandService
    video: VideoRegistry
    audit: AuditService
    users: UserService
    sessions: SessionService
    apikeys: ApiKeyService
    signin: SignInService
    nats_auth: NatsAuthManager | None
    console: ConsoleData
    live: LiveStreams
    tracks: TrackService
    detections: DetectionService
    embeds: EmbedService
    state_reader: StateReader
    entity_page: EntityPage
    fleet: FleetPage
    map_data: MapData
    video_feeds: VideoFeeds

    def provided(self) -> dict[str, object]:
        """Every service by the name a handler parameter uses to receive it."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def build_services(rt: Runtime) -> Services:
    """Construct every service from the started runtime's connections."""
    assert rt.nc is not None
    cache = StateCache(rt.nc, rt.kv_state, rt.hub, EntityOrgs(rt.db, rt.hub))
    audit = AuditService(rt.db)
    templates = build_environment()
    console = ConsoleData(rt.db, cache, rt.hub, rt.nc, embedded_nats=rt.nats_server is not None)
    sessions = SessionService(rt.db, rt.settings, rt.secret, audit=audit)
    users = UserService(rt.db, audit, rt.settings, sessions=sessions)
    nats_url = rt.nats_server.url if rt.nats_server else ", ".join(rt.settings.nats_servers)
    registry = RegistryService(rt.kv_registry, rt.js, rt.db, rt.hub, audit)
    alerts = AlertService(rt.db, rt.hub, audit)
    commands = CommandService(
        rt.db, rt.js, StateStore(rt.kv_state, "commands"), cache, rt.hub, rt.settings.command_ttl, audit
    )
    video = VideoRegistry()
    tracks = TrackService(rt.db, console)
    detections = DetectionService(rt.db)
    embeds = EmbedService(rt.db, audit)
    return Services(
        registry=registry,
        templates=templates,
        alerts=alerts,
        rules=RuleService(
            rt.db,
            rt.hub,
            audit,
            alerts,
            offline_after=rt.settings.offline_after,
            battery_percent=rt.settings.battery_alert_percent,
        ),
        state_cache=cache,
        commands=commands,
        video=video,
        audit=audit,
        users=users,
        sessions=sessions,
        apikeys=ApiKeyService(rt.db, audit, rt.secret, nats_url=nats_url),
        signin=SignInService(users, sessions, IpLimiter(), audit),
        nats_auth=NatsAuthManager(rt) if rt.settings.embedded_nats else None,
        console=console,
        live=LiveStreams(templates, rt.hub, cache, console.open_alerts),
        tracks=tracks,
        detections=detections,
        embeds=embeds,
        state_reader=StateReader(rt.kv_state, rt.db, cache),
        entity_page=EntityPage(
            cache,
            tracks,
            detections,
            alerts,
            commands,
            registry,
            embeds,
            video,
            rt.settings.battery_alert_percent,
        ),
        fleet=FleetPage(console, registry, embeds, commands),
        map_data=MapData(console, tracks, rt.settings.map_pmtiles, rt.settings.map_mbtiles),
        video_feeds=VideoFeeds(video, registry, embeds, rt.shutting_down),
    )
