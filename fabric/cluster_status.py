"""The fabric's shape, read every few seconds: cluster peers and meta leader, stream replicas, leaf connections.

Two sources, both over NATS (the embedded server runs without a monitoring port):

* the **system account** (``$SYS.REQ.SERVER.PING.JSZ`` / ``LEAFZ``, every server answers):
  the JetStream meta group (leader, peers, whether each is current, its lag) and the
  leaf connections. The embedded server has a system user of its own; an external
  server needs ``NATS_SYSTEM_USER``/``NATS_SYSTEM_PASSWORD``, without them the meta
  leader is reported unknown;
* the **JetStream API** of the application account: each stream's leader and replicas
  (current, lag, offline) and, on a hub, each edge source's lag and time since contact.

``/health/ready`` and ``/nats/server`` read the latest snapshot; nothing here blocks them.
A cluster that lost one of three servers is *degraded* (still ready: two hold the quorum);
one without a meta leader has lost its quorum (the JetStream check fails then).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

log = logging.getLogger("overwatch.cluster")

NS = 1e-9  # the server reports durations in nanoseconds
PING_WAIT = 0.5  # seconds to collect the servers' answers to one ping
STALE_REPLICA = 5.0  # seconds without contact after which a replica counts as behind


class Peer(msgspec.Struct, frozen=True):
    """A member of a raft group (the meta group, or a stream's replicas)."""

    name: str
    current: bool
    active_s: float | None  # seconds since last contact
    lag: int = 0
    offline: bool = False
    leader: bool = False


class StreamCluster(msgspec.Struct, frozen=True):
    """One stream's placement."""

    stream: str
    replicas: int
    leader: str
    peers: list[Peer]

    @property
    def behind(self) -> list[str]:
        """Replicas that are offline or not current."""
        return [p.name for p in self.peers if p.offline or not p.current]


class SourceState(msgspec.Struct, frozen=True):
    """A stream source (a hub's view of one edge stream)."""

    stream: str
    source: str
    api: str
    lag: int
    active_s: float | None
    error: str = ""


class LeafLink(msgspec.Struct, frozen=True):
    """A leaf-node connection as one server sees it."""

    server: str
    name: str
    account: str
    address: str
    rtt: str
    in_msgs: int
    out_msgs: int


class ClusterSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """Everything known about the fabric at ``taken_at``."""

    taken_at: float
    system_access: bool  # the system account answered
    cluster_name: str = ""
    meta_leader: str = ""
    cluster_size: int = 0
    servers_answering: list[str] = msgspec.field(default_factory=list)
    meta_peers: list[Peer] = msgspec.field(default_factory=list)
    streams: list[StreamCluster] = msgspec.field(default_factory=list)
    sources: list[SourceState] = msgspec.field(default_factory=list)
    leafs: list[LeafLink] = msgspec.field(default_factory=list)
    error: str = ""

    @property
    def clustered(self) -> bool:
        """More than one JetStream server (a meta group, or replicated streams)."""
        return self.cluster_size > 1 or any(s.replicas > 1 for s in self.streams)

    @property
    def degraded(self) -> list[str]:
        """What is wrong but leaves the quorum: missing servers, replicas behind (empty: all well)."""
        out: list[str] = []
        missing = [p.name for p in self.meta_peers if (p.offline or not p.current) and not p.leader]
        if missing:
            out.append(f"meta peers not current: {', '.join(sorted(missing))}")
        elif self.cluster_size and len(self.servers_answering) < self.cluster_size:
            out.append(f"{len(self.servers_answering)} of {self.cluster_size} servers answer")
        behind = sorted({name for s in self.streams for name in s.behind})
        if behind:
            out.append(f"stream replicas behind: {', '.join(behind)}")
        return out

    def summary(self) -> str:
        """One line for ``/health/ready``."""
        if self.error and not self.streams:
            return f"cluster status unavailable: {self.error}"
        if not self.clustered:
            return "single server" + (f" {self.servers_answering[0]}" if self.servers_answering else "")
        leader = self.meta_leader or "unknown (no system account access)"
        size = f"{len(self.servers_answering)}/{self.cluster_size} servers" if self.cluster_size else ""
        state = "; ".join(self.degraded) or "all replicas current"
        return f"cluster {self.cluster_name or '?'}: meta leader {leader}; {size}; {state}".replace("; ;", ";")


def _peer(raw: dict[str, Any], leader: bool = False) -> Peer:
    active = raw.get("active")
    return Peer(
        name=str(raw.get("name", "?")),
        current=bool(raw.get("current", leader)),
        active_s=float(active) * NS if isinstance(active, (int, float)) else None,
        lag=int(raw.get("lag") or 0),
        offline=bool(raw.get("offline", False)),
        leader=leader,
    )


async def ping_all(nc: NATS, subject: str, wait: float = PING_WAIT, expect: int = 0) -> list[dict[str, Any]]:
    """Publish a system ping and collect every server's answer for up to ``wait`` seconds."""
    answers: list[dict[str, Any]] = []
    done = asyncio.Event()

    async def on_answer(msg: Msg) -> None:
        with contextlib.suppress(ValueError):
            answers.append(json.loads(msg.data))
        if expect and len(answers) >= expect:
            done.set()

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=on_answer)
    try:
        await nc.publish(subject, b"{}", reply=inbox)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), wait)
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return answers


async def read_snapshot(nc: NATS, sys_nc: NATS | None, streams: list[str], timeout: float = 2.0) -> ClusterSnapshot:
    """Ask the servers now (``sys_nc``: a system-account connection, if there is one)."""
    now = time.time()
    fields: dict[str, Any] = {"taken_at": now, "system_access": False}
    errors: list[str] = []
    if sys_nc is not None and sys_nc.is_connected:
        try:
            await _system_view(sys_nc, fields)
        except Exception as exc:  # noqa: BLE001 - the snapshot says what failed
            errors.append(f"system account: {exc or type(exc).__name__}")
    stream_views: list[StreamCluster] = []
    sources: list[SourceState] = []
    for name in streams:
        try:
            msg = await nc.request(f"$JS.API.STREAM.INFO.{name}", b"", timeout=timeout)
            info = json.loads(msg.data)
        except Exception as exc:  # noqa: BLE001
            errors.append(f"{name}: {exc or type(exc).__name__}")
            continue
        if "error" in info:
            errors.append(f"{name}: {info['error'].get('description', 'error')}")
            continue
        config, cluster = info.get("config", {}), info.get("cluster") or {}
        peers = [_peer(r) for r in cluster.get("replicas") or []]
        if cluster.get("leader"):
            peers.insert(0, Peer(name=str(cluster["leader"]), current=True, active_s=0.0, leader=True))
        stream_views.append(
            StreamCluster(
                stream=name,
                replicas=int(config.get("num_replicas") or 1),
                leader=str(cluster.get("leader", "")),
                peers=peers,
            )
        )
        for src in info.get("sources") or []:
            external = src.get("external") or {}
            active = src.get("active")
            err = src.get("error") or {}
            sources.append(
                SourceState(
                    stream=name,
                    source=str(src.get("name", "")),
                    api=str(external.get("api", "")),
                    lag=int(src.get("lag") or 0),
                    active_s=float(active) * NS if isinstance(active, (int, float)) and active >= 0 else None,
                    error=str(err.get("description", "")) if isinstance(err, dict) else str(err),
                )
            )
    fields["streams"] = stream_views
    fields["sources"] = sources
    fields["error"] = "; ".join(errors)
    return ClusterSnapshot(**fields)


async def _system_view(sys_nc: NATS, fields: dict[str, Any]) -> None:
    jsz = await ping_all(sys_nc, "$SYS.REQ.SERVER.PING.JSZ")
    if not jsz:
        raise TimeoutError("no server answered")
    fields["system_access"] = True
    names: list[str] = []
    meta: dict[str, Any] = {}
    for answer in jsz:
        server = answer.get("server", {})
        names.append(str(server.get("name", "?")))
        cluster = (answer.get("data") or {}).get("meta_cluster") or {}
        # The meta leader's own view says which peers are current; any other view says who leads.
        if cluster and (not meta or cluster.get("leader") == server.get("name")):
            meta = {**cluster, "_from": server.get("name")}
    fields["servers_answering"] = sorted(names)
    if meta:
        leader = str(meta.get("leader", ""))
        fields["cluster_name"] = str(meta.get("name", ""))
        fields["meta_leader"] = leader
        fields["cluster_size"] = int(meta.get("cluster_size") or len(names))
        peers = [_peer(r) for r in meta.get("replicas") or []]
        if leader:
            peers.insert(0, Peer(name=leader, current=True, active_s=0.0, leader=True))
        fields["meta_peers"] = peers
    leafz = await ping_all(sys_nc, "$SYS.REQ.SERVER.PING.LEAFZ", expect=len(names))
    links: list[LeafLink] = []
    for answer in leafz:
        server = str(answer.get("server", {}).get("name", "?"))
        for leaf in (answer.get("data") or {}).get("leafs") or []:
            links.append(
                LeafLink(
                    server=server,
                    name=str(leaf.get("name", "")),
                    account=str(leaf.get("account", "")),
                    address=f"{leaf.get('ip', '')}:{leaf.get('port', '')}",
                    rtt=str(leaf.get("rtt", "")),
                    in_msgs=int(leaf.get("in_msgs") or 0),
                    out_msgs=int(leaf.get("out_msgs") or 0),
                )
            )
    fields["leafs"] = links


class ClusterMonitor:
    """Keeps the latest ``ClusterSnapshot``, refreshed every ``interval`` seconds."""

    def __init__(self, nc: NATS, sys_nc: NATS | None, streams: list[str], interval: float = 2.0) -> None:
        self.nc = nc
        self.sys_nc = sys_nc
        self.streams = streams
        self.interval = interval
        self.snapshot: ClusterSnapshot | None = None
        self.updated = asyncio.Event()

    async def refresh(self) -> ClusterSnapshot:
        """Take a snapshot now."""
        self.snapshot = await read_snapshot(self.nc, self.sys_nc, self.streams)
        self.updated.set()
        return self.snapshot

    async def run(self, stopping: asyncio.Event) -> None:
        """Refresh until ``stopping`` is set."""
        while not stopping.is_set():
            try:
                await self.refresh()
            except Exception:
                log.exception("cluster status refresh failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.interval)

    def check(self) -> dict[str, Any]:
        """The readiness check: ``ok`` unless the snapshot is missing; ``degraded`` with what is wrong."""
        snap = self.snapshot
        if snap is None:
            return {"ok": True, "detail": "cluster status not read yet"}
        check: dict[str, Any] = {"ok": True, "detail": snap.summary()}
        if snap.clustered:
            check["meta_leader"] = snap.meta_leader or None
            check["servers"] = snap.servers_answering
            check["cluster_size"] = snap.cluster_size
            if snap.degraded:
                check["degraded"] = True
        return check
