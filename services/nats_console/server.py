"""The server view: JetStream account usage vs limits, our connection's traffic, disk free.

The embedded server runs without its HTTP monitoring port (nothing extra listens), so
server-wide ``/varz`` figures are not available; the page shows what the JetStream API
(``$JS.API.INFO``) and this process's own connection report, and says so.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from nats.aio.client import Client as NATS

from fabric.api import Rates, request
from fabric.client import server_address
from fabric.cluster_status import ClusterSnapshot
from fabric.links import LinkState
from fabric.server import EmbeddedNats


class Usage(msgspec.Struct, frozen=True):
    """One resource: used, limit (-1 = unlimited) and the share used."""

    name: str
    used: int
    limit: int
    unit: str  # "bytes" or "count"

    @property
    def percent(self) -> float | None:
        """Share of the limit in use (``None`` when unlimited)."""
        return self.used * 100.0 / self.limit if self.limit > 0 else None


class Traffic(msgspec.Struct, frozen=True):
    """A counter of our connection and its rate."""

    name: str
    total: int
    rate: float | None
    unit: str


class ServerView(msgspec.Struct, frozen=True, kw_only=True):
    """Everything on the server page."""

    server_name: str
    server_id: str
    version: str
    connected_url: str
    embedded: bool
    server_uptime_s: float | None
    app_uptime_s: float
    usage: list[Usage]
    api_total: int
    api_errors: int
    traffic: list[Traffic]
    reconnects: int
    disk_path: str
    disk_free: int
    disk_total: int


def _process_uptime(pid: int | None) -> float | None:
    """Seconds since a local process started (Linux ``/proc``; ``None`` elsewhere)."""
    if not pid:
        return None
    try:
        start_ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot_uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return None
    return boot_uptime - start_ticks / os.sysconf("SC_CLK_TCK")


class FabricView(msgspec.Struct, frozen=True, kw_only=True):
    """The scale-out part of the page: cluster, stream placement, sources, leafs, links, this node's projections."""

    node_id: str
    cluster: ClusterSnapshot | None
    links: list[LinkState]
    link_role: str
    projections: list[dict[str, object]]


class ServerService:
    """The server page: JetStream account usage, this connection's traffic and rates, disk, uptimes."""

    def __init__(
        self,
        nc: NATS,
        server: EmbeddedNats | None,
        disk: Path,
        started_at: float,
        prefix: str = "$JS.API",
        fabric: Callable[[], FabricView] | None = None,
    ) -> None:
        self.fabric = fabric or (lambda: FabricView(node_id="", cluster=None, links=[], link_role="", projections=[]))
        self.nc = nc
        self.server = server  # the embedded child, None when NATS is external
        self.disk = disk  # the NATS store (embedded) or the data directory
        self.started_at = started_at  # this process's start (time.time())
        self.prefix = prefix
        self.rates = Rates()

    async def view(self) -> ServerView:
        """Read account info, connection stats and disk usage now (rates from earlier samples)."""
        nc = self.nc
        account = await request(nc, f"{self.prefix}.INFO")
        limits: dict[str, Any] = account.get("limits", {})
        usage = [
            Usage("memory", int(account.get("memory", 0)), int(limits.get("max_memory", -1)), "bytes"),
            Usage("storage", int(account.get("storage", 0)), int(limits.get("max_storage", -1)), "bytes"),
            Usage("streams", int(account.get("streams", 0)), int(limits.get("max_streams", -1)), "count"),
            Usage("consumers", int(account.get("consumers", 0)), int(limits.get("max_consumers", -1)), "count"),
        ]
        now = time.monotonic()
        stats = nc.stats
        traffic = [
            Traffic(
                key.replace("_", " "),
                int(stats.get(key, 0)),
                self.rates.add(f"nc:{key}", float(stats.get(key, 0)), now),
                unit,
            )
            for key, unit in (("in_msgs", "msgs"), ("out_msgs", "msgs"), ("in_bytes", "bytes"), ("out_bytes", "bytes"))
        ]
        info: dict[str, Any] = getattr(nc, "_server_info", {}) or {}
        try:
            du = shutil.disk_usage(self.disk)
            free, total = du.free, du.total
        except OSError:
            free = total = 0
        server = self.server
        return ServerView(
            server_name=str(info.get("server_name", "")),
            server_id=str(info.get("server_id", "")),
            version=str(nc.connected_server_version) if nc.is_connected else "",
            connected_url=server_address(nc.connected_url) if nc.connected_url else "",
            embedded=server is not None,
            server_uptime_s=_process_uptime(server.pid) if server is not None else None,
            app_uptime_s=time.time() - self.started_at,
            usage=usage,
            api_total=int(account.get("api", {}).get("total", 0)),
            api_errors=int(account.get("api", {}).get("errors", 0)),
            traffic=traffic,
            reconnects=int(stats.get("reconnects", 0)),
            disk_path=str(self.disk),
            disk_free=free,
            disk_total=total,
        )
