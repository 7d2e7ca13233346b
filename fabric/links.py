"""The hub–edge link: is the other side's JetStream reachable, and catching up at once when it returns.

An edge box sources its commands from the hub's outbox; a hub sources telemetry,
events, commands and the registry from each edge (``app/topology.py``). When a leaf
link drops, nats-server retries each source with a growing back-off (10 s, 20 s, …
up to 2 min, not configurable): the link is back in 50 ms but the data would follow
only on the next retry, measured 49 s later (``../shared/reference/nats-edge.md``). So
each side probes the other's JetStream API (``$JS.{domain}.API.INFO``) every second and,
when the link returns and its sources are idle, cuts the back-off short:

* a replicated stream (``NATS_REPLICAS`` > 1): its leader steps down, and the new leader
  sets the sources up at once (measured 0.42 s for 5,000 messages);
* a one-replica stream: the other side's sources are removed and added again (0.53 s);
  they resume after the last message they delivered (exactly once).

Several hub nodes see the same return: each waits a random moment and skips the cut
when the sources are already active again (another node did it). Only a node's own
streams are ever touched: an edge never changes the hub's, nor a hub an edge's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from core import topology

log = logging.getLogger("overwatch.cluster.links")

PROBE_INTERVAL = 1.0  # seconds between probes of the other side
PROBE_TIMEOUT = 1.0
FRESH = 3.0  # seconds: a source heard from this recently is flowing, no cut needed
JITTER = 0.5  # seconds: hub nodes spread out their reaction to one return


class LinkState(msgspec.Struct, kw_only=True):
    """One link as this node sees it."""

    peer: str  # the other side's JetStream domain
    up: bool | None = None  # None: not probed yet
    since: float = 0.0  # when it last changed (epoch seconds)
    last_ok: float = 0.0
    returns: int = 0  # down → up transitions seen
    cuts: int = 0  # back-off cuts this node made
    last_cut: str = ""  # how the last one was made ("step-down", "re-source", "already flowing")


class EdgeLinks:
    """Probes the other side of every leaf link this node's streams source across.

    ``role`` is ``"edge"`` (one peer: the hub; the stream is ``CONSTELLATION_COMMANDS``)
    or ``"hub"`` (one peer per edge; the stream is ``CONSTELLATION_EDGES``).
    """

    def __init__(
        self,
        nc: NATS,
        js: JetStreamContext,
        role: str,
        peers: list[str],
        *,
        own_domain: str = "",
        replicas: int = 1,
        interval: float = PROBE_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if role not in ("edge", "hub"):
            raise ValueError(f"role must be edge or hub, not {role!r}")
        self.nc = nc
        self.js = js
        self.role = role
        self.own_domain = own_domain
        self.replicas = replicas
        self.interval = interval
        self.clock = clock
        self.links = {peer: LinkState(peer=peer) for peer in peers}
        self.listeners: list[Callable[[LinkState], None]] = []
        self._cutting: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def stream(self) -> str:
        """The stream on this side whose sources cross the link."""
        return topology.STREAM_COMMANDS if self.role == "edge" else topology.STREAM_EDGES

    def on_change(self, listener: Callable[[LinkState], None]) -> None:
        """Call ``listener(state)`` whenever a link goes up or down."""
        self.listeners.append(listener)

    def state(self, peer: str) -> LinkState | None:
        """The link to ``peer`` (``None``: not one of ours)."""
        return self.links.get(peer)

    async def probe(self, peer: str) -> bool:
        """Whether ``peer``'s JetStream answers across the leaf link now."""
        try:
            msg = await self.nc.request(f"$JS.{peer}.API.INFO", b"", timeout=PROBE_TIMEOUT)
            answer = json.loads(msg.data)
        except Exception:  # noqa: BLE001 - no answer is the answer
            return False
        return isinstance(answer, dict) and "error" not in answer

    async def check(self) -> None:
        """Probe every peer once; react to changes."""
        for peer, link in self.links.items():
            up = await self.probe(peer)
            now = self.clock()
            if up:
                link.last_ok = now
            if up == link.up:
                continue
            was, link.up, link.since = link.up, up, now
            log.log(
                logging.INFO if up else logging.WARNING,
                "link to %s %s",
                peer,
                "up" if up else "down (this side keeps working; it catches up when the link returns)",
            )
            if up:
                if was is False:
                    link.returns += 1
                self._spawn(self._after_return(peer, first=was is None))
            for listener in self.listeners:
                try:
                    listener(link)
                except Exception:
                    log.exception("link listener failed")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self, stopping: asyncio.Event) -> None:
        """Probe until ``stopping`` is set."""
        try:
            while not stopping.is_set():
                try:
                    await self.check()
                except Exception:
                    log.exception("link check failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), self.interval)
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _after_return(self, peer: str, first: bool) -> None:
        if peer in self._cutting:
            return
        self._cutting.add(peer)
        try:
            if self.role == "hub":
                await asyncio.sleep(random.uniform(0, JITTER))
            await self.cut_backoff(peer, skip_if_flowing=True)
        except Exception as exc:  # noqa: BLE001 - the next return tries again; sources retry on their own
            log.warning("catching up with %s after the link returned failed: %s", peer, exc or type(exc).__name__)
        finally:
            self._cutting.discard(peer)

    async def _sources(self) -> list[dict[str, Any]]:
        msg = await self.nc.request(f"$JS.API.STREAM.INFO.{self.stream}", b"", timeout=2.0)
        info = json.loads(msg.data)
        sources = info.get("sources") or []
        return [s for s in sources if isinstance(s, dict)]

    def _api_of(self, peer: str) -> str:
        return f"$JS.{peer}.API"

    async def flowing(self, peer: str) -> bool:
        """Whether every source across the link to ``peer`` was heard from in the last ``FRESH`` seconds."""
        api = self._api_of(peer)
        mine = [s for s in await self._sources() if (s.get("external") or {}).get("api") == api]
        if not mine:
            return False
        return all(isinstance(s.get("active"), (int, float)) and 0 <= s["active"] * 1e-9 < FRESH for s in mine)

    async def cut_backoff(self, peer: str, skip_if_flowing: bool = False) -> str:
        """Make this side's sources from ``peer`` resume now; returns how (or that nothing was needed)."""
        link = self.links[peer]
        if skip_if_flowing and await self.flowing(peer):
            link.last_cut = "already flowing"
            return link.last_cut
        if self.replicas > 1:
            msg = await self.nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{self.stream}", b"", timeout=5.0)
            answer = json.loads(msg.data)
            if "error" in answer:
                raise RuntimeError(answer["error"].get("description", "step-down refused"))
            how = "step-down"
        else:
            await self._resource(peer)
            how = "re-source"
        link.cuts += 1
        link.last_cut = how
        log.info("link to %s back: %s of %s so its sources resume now", peer, how, self.stream)
        return how

    async def _resource(self, peer: str) -> None:
        """Remove the sources from ``peer`` and add them again (they resume after their last message)."""
        api = self._api_of(peer)
        info = await self.js.stream_info(self.stream)
        config = info.config
        others = [s for s in config.sources or () if not (s.external and s.external.api == api)]
        await self.js.update_stream(config.evolve(sources=others))
        wanted = (
            [topology.hub_outbox_source(self.own_domain, peer)] if self.role == "edge" else topology.edge_sources(peer)
        )
        await self.js.update_stream(config.evolve(sources=[*others, *wanted]))

    def check_ready(self) -> dict[str, Any]:
        """The readiness check: always ``ok`` (each side works alone); ``degraded`` while a link is down."""
        down = [p for p, link in self.links.items() if link.up is False]
        unknown = [p for p, link in self.links.items() if link.up is None]
        parts = []
        for peer, link in self.links.items():
            if link.up is None:
                parts.append(f"{peer}: not probed yet")
            else:
                ago = max(0.0, self.clock() - link.since)
                parts.append(f"{peer}: {'up' if link.up else 'down'} for {ago:.0f}s")
        check: dict[str, Any] = {"ok": True, "detail": "; ".join(parts) or "no links", "role": self.role}
        if down or unknown:
            check["degraded"] = True
        return check
