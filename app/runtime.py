"""The process runtime: data dir, SQLite, NATS (embedded or external), topology, workers.

``Runtime.start`` brings the parts up in dependency order and turns every known
failure into a ``StartupError`` with one clear sentence; ``Runtime.stop`` takes them
down in reverse and is safe to call after a partial start.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from nats.aio.client import Client as NATS
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from app.datadir import StartupError, ensure_data_dir, load_or_create_secret
from app.metric_sources import metric_sources
from app.node import NodeIdError, load_or_create_node_id
from app.services import Services, build_services
from core import topology
from core.clock import SYSTEM_CLOCK, Clock
from core.settings import Settings, parse_size
from core.topics import Topic
from db.database import Database, DatabaseError
from fabric.client import NatsConnectError, close_quietly, connect
from fabric.cluster_status import ClusterMonitor
from fabric.links import EdgeLinks, LinkState
from fabric.scale_out import SYSTEM_USER, ScaleOutConfig, system_password
from fabric.server import EmbeddedNats, NatsServerError
from fabric.tls import CertPair, TlsError, http_cert, nats_cert, pinned_context
from services.hub import Hub, Update
from services.metrics.otel import Metrics
from services.metrics.sampler import Sampler
from services.metrics.tracing import Tracing
from services.nats_auth import INTERNAL_USER, internal_password, render_authorization
from workers.base import Worker, WorkerContext, WorkerManager

log = logging.getLogger("overwatch")

WorkerFactory = Callable[[WorkerContext, Services], Worker]  # builds one worker from what it uses


def client_auth(settings: Settings) -> dict[str, Any]:
    """Credentials a local tool uses: the embedded server's own user, or the external server's auth.

    With TLS on the embedded server, also a context that trusts exactly its certificate.
    """
    if settings.embedded_nats:
        auth: dict[str, Any] = {"user": INTERNAL_USER, "password": internal_password(load_or_create_secret(settings))}
        pair = nats_cert(settings, create=False)
        if pair is not None:
            auth["tls"] = pinned_context(pair.cert)
        return auth
    return {"token": settings.nats_token, "creds": settings.nats_creds, "nkey_seed_file": settings.nats_nkey_seed_file}


def _no_link(_edge: str) -> None:
    """``edge_link`` in templates where this node has no edge links."""
    return None


class Runtime:
    """Owns the long-lived parts of one server process."""

    def __init__(
        self, settings: Settings, worker_factories: Sequence[WorkerFactory] = (), clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.settings = settings
        self.clock = clock  # every time-driven service and worker reads time here (tests pass a manual one)
        self.worker_factories = list(worker_factories)
        self.hub = Hub()
        self.db = Database(settings.db_path)
        self.nats_server: EmbeddedNats | None = None
        self.nc: NATS | None = None
        self.sys_nc: NATS | None = None  # system-account connection for cluster status (if any)
        self.cluster: ClusterMonitor | None = None
        self.links: EdgeLinks | None = None  # hub–edge link probes (edge box or hub of edges)
        self._js: JetStreamContext | None = None
        self._kv_state: KeyValue | None = None
        self._kv_registry: KeyValue | None = None
        self.workers = WorkerManager([])
        self.secret = ""
        self.node_id = ""
        self.http_tls: CertPair | None = None
        self.nats_tls: CertPair | None = None
        self.started_at = time.time()
        self.shutting_down = asyncio.Event()
        self._services: Services | None = None
        self.background: list[asyncio.Task[Any]] = []
        self.metrics = Metrics(settings.data_path)
        self.tracing = Tracing()

    @property
    def js(self) -> JetStreamContext:
        """The JetStream context (after ``start``)."""
        assert self._js is not None, "runtime not started"
        return self._js

    @property
    def kv_state(self) -> KeyValue:
        """The ``CONSTELLATION_GLOBAL_STATE`` bucket."""
        assert self._kv_state is not None, "runtime not started"
        return self._kv_state

    @property
    def kv_registry(self) -> KeyValue:
        """The ``CONSTELLATION_REGISTRY`` bucket."""
        assert self._kv_registry is not None, "runtime not started"
        return self._kv_registry

    @property
    def services(self) -> Services:
        """The application services (after ``start``)."""
        assert self._services is not None, "runtime not started"
        return self._services

    @property
    def worker_context(self) -> WorkerContext:
        """What workers and services get to work with."""
        assert self.nc is not None
        return WorkerContext(
            settings=self.settings,
            nc=self.nc,
            js=self.js,
            kv_state=self.kv_state,
            kv_registry=self.kv_registry,
            db=self.db,
            hub=self.hub,
            tracer=self.tracing.tracer,
            node_id=self.node_id,
            clock=self.clock,
        )

    async def start(self) -> None:
        """Bring everything up; raise ``StartupError`` with one clear line on failure."""
        s = self.settings
        ensure_data_dir(s.data_path)
        self.secret = load_or_create_secret(s)
        try:
            self.node_id = load_or_create_node_id(s.data_path)
        except NodeIdError as exc:
            raise StartupError(str(exc)) from None
        try:
            self.http_tls = http_cert(s)
            self.nats_tls = nats_cert(s)
        except TlsError as exc:
            raise StartupError(str(exc)) from None
        try:
            await self.db.open()
        except DatabaseError as exc:
            raise StartupError(str(exc)) from None
        servers = s.nats_servers
        auth: dict[str, Any] = {"token": s.nats_token, "creds": s.nats_creds, "nkey_seed_file": s.nats_nkey_seed_file}
        if s.embedded_nats:
            self.nats_server = EmbeddedNats(
                s.nats_store_path,
                s.nats_host,
                s.nats_port,
                parse_size(s.nats_max_memory),
                parse_size(s.nats_max_file_store),
                extra_config=await render_authorization(self.db, self.secret, self.node_id),
                binary=s.nats_server_bin or None,
                tls=self.nats_tls,
                scale_out=ScaleOutConfig(
                    domain=s.nats_domain,
                    leaf_remotes=tuple(s.leaf_remotes),
                    leaf_creds=s.nats_leaf_creds,
                    system_password=system_password(self.secret),
                ),
            )
            auth = {"user": INTERNAL_USER, "password": internal_password(self.secret)}
            if self.nats_tls is not None:
                auth["tls"] = pinned_context(self.nats_tls.cert)
            try:
                servers = [await self.nats_server.start(timeout=s.startup_timeout)]
            except NatsServerError as exc:
                raise StartupError(str(exc)) from None
        try:
            self.nc = await connect(
                servers,
                name="overwatch-server",
                timeout=s.startup_timeout,
                on_state=lambda _up: self.hub.publish(Update(Topic.SYSTEM, "nats")),
                **auth,
            )
        except NatsConnectError as exc:
            raise StartupError(str(exc)) from None
        self._js = self.nc.jetstream(timeout=5.0)
        await self._connect_system(servers, auth)
        await self._wait_for_jetstream(s.startup_timeout)
        leaf = (s.nats_domain, s.nats_hub_domain) if s.leaf_remotes else None
        deadline = time.monotonic() + s.startup_timeout
        while True:
            try:
                store = parse_size(s.nats_max_file_store) if s.embedded_nats else None
                report = await topology.ensure_topology(
                    self._js,
                    store,
                    s.dlq_max_per_subject,
                    state_ttl=s.state_ttl_hours * topology.HOUR,
                    integrator_consumers=s.detection_processor,
                    replicas=s.nats_replicas,
                    edges=tuple(s.edge_list),
                    leaf=leaf,
                )
                break
            except topology.TopologyError as exc:
                raise StartupError(str(exc)) from None
            except NatsTimeoutError:
                # A cluster that just formed (or several nodes creating the same replicated streams at
                # once) can take a few seconds per placement: try again until the start-up deadline.
                if time.monotonic() > deadline:
                    raise StartupError(
                        f"JetStream did not answer within {s.startup_timeout:.0f}s while creating streams"
                    ) from None
                log.info("JetStream busy while creating streams; trying again")
        created = [k for k, v in report.items() if v != "ok"]
        log.info("topology ready (%d objects%s)", len(report), f"; changed: {', '.join(created)}" if created else "")
        self._kv_state = await self._js.key_value(topology.BUCKET_STATE)
        self._kv_registry = await self._js.key_value(topology.BUCKET_REGISTRY)
        self._services = build_services(self)
        ctx = self.worker_context
        self.workers = WorkerManager([factory(ctx, self.services) for factory in self.worker_factories])
        self.workers.start()
        self.metrics.attach(metric_sources(self))
        sampler = Sampler(self.metrics, self.db, self.hub, s.metrics_interval, s.metrics_retention_hours)
        self.background.append(asyncio.create_task(sampler.run(self.shutting_down), name="metrics-sampler"))
        self._start_scale_out()

    async def _connect_system(self, servers: list[str], auth: dict[str, Any]) -> None:
        """A second connection in the system account, for cluster status (embedded: its own system user)."""
        s = self.settings
        if s.embedded_nats:
            sys_auth: dict[str, Any] = {"user": SYSTEM_USER, "password": system_password(self.secret)}
            if "tls" in auth:
                sys_auth["tls"] = auth["tls"]
        elif s.nats_system_user:
            sys_auth = {"user": s.nats_system_user, "password": s.nats_system_password}
        else:
            return
        try:
            self.sys_nc = await connect(
                servers, name="overwatch-status", timeout=min(5.0, s.startup_timeout), **sys_auth
            )
        except NatsConnectError as exc:
            # Status is a view, not a dependency: the server runs without it and says so.
            log.warning("no system-account connection for cluster status: %s", exc)

    async def _wait_for_jetstream(self, timeout: float) -> None:
        """A cluster just started elects its meta leader in a few seconds: wait for JetStream to answer."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                await self.js.account_info()
                return
            except Exception as exc:  # noqa: BLE001 - retried until the deadline, then reported
                if time.monotonic() > deadline:
                    raise StartupError(f"JetStream did not answer within {timeout:.0f}s: {exc}") from None
                await asyncio.sleep(0.25)

    def _start_scale_out(self) -> None:
        """Cluster status for readiness and ``/nats/server``; the hub–edge link probes."""
        s = self.settings
        assert self.nc is not None
        streams = [c.name or "" for c in topology.desired_streams(None, edges=tuple(s.edge_list))]
        self.cluster = ClusterMonitor(self.nc, self.sys_nc, streams)
        self.background.append(asyncio.create_task(self.cluster.run(self.shutting_down), name="cluster-status"))
        if s.leaf_remotes:
            self.links = EdgeLinks(self.nc, self.js, "edge", [s.nats_hub_domain], own_domain=s.nats_domain)
        elif s.edge_list:
            self.links = EdgeLinks(self.nc, self.js, "hub", s.edge_list, replicas=s.nats_replicas)
        links = self.links
        self.services.templates.globals["edge_link"] = links.state if links is not None else _no_link
        if links is not None:
            if links.role == "hub":
                cache = self.services.state_cache

                def redraw(link: LinkState) -> None:
                    # Pages show each edge entity's link state: draw its rows and headers again.
                    for entity_id, view in list(cache.all().items()):
                        if view.get("edge") == link.peer:
                            cache.touch(entity_id)

                links.on_change(redraw)
            self.background.append(asyncio.create_task(links.run(self.shutting_down), name="edge-links"))

    async def stop(self) -> None:
        """End streams, stop workers, drain NATS, stop the child, close SQLite."""
        self.shutting_down.set()
        self.hub.close_all()
        if self.background:
            _, pending = await asyncio.wait(self.background, timeout=2.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self.background, return_exceptions=True)
        await self.workers.stop()
        self.metrics.shutdown()
        self.tracing.shutdown()
        await close_quietly(self.sys_nc)
        await close_quietly(self.nc)
        if self.nats_server:
            await self.nats_server.stop()
        await self.db.close()
