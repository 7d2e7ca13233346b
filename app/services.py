"""The application services, built once per process after the runtime has started."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from jinja2 import Environment

from fabric.api import api_prefix
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
from services.health import (
    CheckFn,
    Health,
    database_check,
    jetstream_check,
    nats_check,
    server_check,
    status_check,
    workers_check,
)
from services.metrics.service import MetricsService
from services.nats_auth import NatsAuthManager
from services.nats_console.access import KeyAccess
from services.nats_console.dlq import DlqService
from services.nats_console.kv import KvService
from services.nats_console.messages import MessageService
from services.nats_console.server import FabricView, ServerService
from services.nats_console.streams import StreamService
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
    tracks: TrackService
    detections: DetectionService
    embeds: EmbedService
    state_reader: StateReader
    entity_page: EntityPage
    fleet: FleetPage
    map_data: MapData
    video_feeds: VideoFeeds
    nats_auth: NatsAuthManager | None
    console: ConsoleData
    live: LiveStreams
    nats_streams: StreamService
    nats_messages: MessageService
    nats_server_view: ServerService
    nats_kv: KvService
    nats_dlq: DlqService
    metrics: MetricsService
    health: Health

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
    alerts = AlertService(rt.db, rt.hub, audit)
    streams = StreamService(rt.nc, audit, api_prefix(rt.js))
    sessions = SessionService(rt.db, rt.settings, rt.secret, rt.clock, audit=audit)
    users = UserService(rt.db, audit, rt.settings, rt.clock, sessions=sessions)
    nats_url = rt.nats_server.url if rt.nats_server else ", ".join(rt.settings.nats_servers)
    apikeys = ApiKeyService(rt.db, audit, rt.secret, nats_url=nats_url)
    nats_auth = None
    if rt.nats_server is not None:
        nats_auth = NatsAuthManager(rt.db, rt.secret, rt.hub, rt.nats_server, rt.node_id)
        apikeys.add_listener(nats_auth.mark_dirty)  # keys created or revoked here re-render at once
    registry = RegistryService(rt.kv_registry, rt.js, rt.db, rt.hub, audit)
    commands = CommandService(
        rt.db,
        rt.js,
        StateStore(rt.kv_state, "commands"),
        cache,
        rt.hub,
        rt.settings.command_ttl,
        audit,
        rt.clock,
        node_id=rt.node_id,
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
        apikeys=apikeys,
        signin=SignInService(users, sessions, IpLimiter(), audit),
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
        nats_auth=nats_auth,
        console=console,
        live=LiveStreams(templates, rt.hub, cache, console.open_alerts),
        nats_streams=streams,
        nats_messages=MessageService(rt.nc, rt.hub, streams),
        nats_server_view=ServerService(
            rt.nc,
            rt.nats_server,
            rt.settings.nats_store_path if rt.settings.embedded_nats else rt.settings.data_path,
            rt.started_at,
            api_prefix(rt.js),
            fabric=lambda: fabric_view(rt),
        ),
        nats_kv=KvService(rt.nc, rt.js, KeyAccess(rt.db, cache), audit),
        # Workers are built after the services: the dead-letter page reads their refusals when asked.
        nats_dlq=DlqService(rt.js, audit, lambda: rt.workers.dlq_refused(), rt.settings.dlq_max_per_subject),
        metrics=MetricsService(rt.metrics, rt.db, cache, rt.settings.metrics_public, rt.settings.metrics_interval),
        health=Health(rt.started_at, readiness_checks(rt, nats_auth)),
    )


def readiness_checks(rt: Runtime, nats_auth: NatsAuthManager | None) -> dict[str, CheckFn]:
    """What ``/health/ready`` checks, in the order it reports them."""
    assert rt.nc is not None
    checks: dict[str, CheckFn] = {
        "nats": nats_check(rt.nc),
        "jetstream": jetstream_check(rt.js),
        "database": database_check(rt.db),
        # Workers are built after the services: their status is read when asked.
        "workers": workers_check(lambda: rt.workers.status(), len(rt.worker_factories)),
    }
    if rt.nats_server is not None:
        checks["nats_server"] = server_check(rt.nats_server)
        if nats_auth is not None:
            # A failed re-render or reload leaves revoked keys connected: not ready.
            checks["nats_auth"] = status_check(nats_auth.status)
    # Scale-out (docs/scale-out.md): the cluster's shape, and the hub–edge links. Both start after
    # the services, so they are read when asked.
    checks["cluster"] = status_check(lambda: rt.cluster.check() if rt.cluster else {"ok": True, "detail": "starting"})
    if rt.settings.leaf_remotes or rt.settings.edge_list:
        checks["links"] = status_check(
            lambda: rt.links.check_ready() if rt.links else {"ok": True, "detail": "starting"}
        )
    return checks


def fabric_view(rt: Runtime) -> FabricView:
    """What the cluster monitor and the link probes last saw, and where this node's projections stand."""
    from workers.projection import ProjectionWorker

    links = rt.links
    return FabricView(
        node_id=rt.node_id,
        cluster=rt.cluster.snapshot if rt.cluster is not None else None,
        links=list(links.links.values()) if links is not None else [],
        link_role=links.role if links is not None else "",
        projections=[w.status() for w in rt.workers.workers if isinstance(w, ProjectionWorker)],
    )
