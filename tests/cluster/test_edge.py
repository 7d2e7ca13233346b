"""Acceptance 4 of issue #17: an edge box (``overwatch serve``, embedded server as a leaf node) cut off from its hub.

The hub is a 3-server cluster (R3) with one Overwatch node sourcing the edge
(``OVERWATCH_EDGES=edge1``); the leaf link runs through a TCP proxy the test cuts
(connections reset, new ones refused). During the cut the edge ingests telemetry and
detections with its console live, and the hub issues two commands for an edge entity.
Sizes and the cut are small by default (1,000 + 40, 15 s: longer than the servers' first
source retry of 10 s); ``OVERWATCH_CLUSTER_FULL=1`` runs the issue's 5,000 + 200 and 60 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from core import topology
from services.nats_auth import INTERNAL_USER, internal_password
from tests.cluster.conftest import EDGE, Node, start_node
from tests.cluster.fabric import APP_PASSWORD, APP_USER, DOC_LEAF, HubCluster, TcpProxy, free_port, recipe_env
from tests.cluster.traffic import Device, NodeDb, api, publish_reliably, register, sizes, traffic
from tests.conftest import ServerProcess
from tests.helpers import eventually

FULL = os.environ.get("OVERWATCH_CLUSTER_FULL") == "1"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300 if FULL else 90)]  # the sizes run longer

ORG = "field"
ENTITIES = [f"fld-{i}" for i in range(6)]
CUT_S = 60.0 if FULL else 15.0


@dataclass
class EdgeSetup:
    """The hub nodes, the edge box and its NATS port."""

    hub_node: Node
    other_hub_node: Node
    edge: ServerProcess
    edge_key: str
    edge_nats_port: int

    def edge_credentials(self) -> tuple[str, str]:
        """The edge server's own user (its password derives from the edge's instance secret)."""
        secret = (self.edge.data_dir / "secret").read_text(encoding="utf-8").strip()
        return INTERNAL_USER, internal_password(secret)


@pytest.fixture
async def setup(hub: HubCluster, nodes: list[Node], tmp_path: Path) -> AsyncIterator[tuple[EdgeSetup, TcpProxy]]:
    """The edge box, its leaf link to the hub through a proxy (in this test's event loop)."""
    proxy = await TcpProxy(hub.nodes[0].leaf_port).start()
    edge_port = free_port()
    edge = start_node(
        tmp_path,
        "edge",
        {
            **recipe_env("edge.env", {DOC_LEAF: proxy.port}),  # the recipe's edge, its link through the proxy
            "NATS_PORT": str(edge_port),
            # The test's devices send in bursts: they stay live through the cut, so a command can reach them.
            "OVERWATCH_OFFLINE_AFTER": "300",
        },
    )
    try:
        await asyncio.to_thread(edge.wait_ready, 45)
        key = await asyncio.to_thread(edge.api_key)
        yield EdgeSetup(nodes[0], nodes[1], edge, key, edge_port), proxy
    finally:
        with contextlib.suppress(Exception):
            edge.stop()
        await proxy.stop()


async def ready(url: str) -> dict[str, Any]:
    """Readiness body and code."""
    async with httpx.AsyncClient(timeout=3.0) as http:
        r = await http.get(f"{url}/health/ready")
    return {"code": r.status_code, **r.json()}


async def page(url: str, key: str, path: str) -> str:
    """A console page's HTML."""
    async with httpx.AsyncClient(timeout=5.0, headers={"Authorization": f"Bearer {key}"}) as http:
        r = await http.get(f"{url}{path}")
    assert r.status_code == 200, (path, r.status_code, r.text[:300])
    return r.text


async def stored(js: JetStreamContext, stream: str, subjects: str) -> int:
    """Messages stored on ``subjects``."""
    info = await js.stream_info(stream, subjects_filter=subjects)
    return sum((info.state.subjects or {}).values())


def command_status(db: NodeDb, command_id: str) -> tuple[str, str] | None:
    """(status, detail) of a command in a node's history."""
    rows = db.rows("SELECT status, detail FROM commands WHERE command_id = ?", (command_id,))
    return (str(rows[0][0]), str(rows[0][1])) if rows else None


@pytest.fixture
async def hub_client(hub: HubCluster) -> AsyncIterator[NATS]:
    """A client on the hub."""
    nc = await nats.connect(servers=hub.urls(user="", password=""), user=APP_USER, password=APP_PASSWORD)
    try:
        yield nc
    finally:
        await nc.close()


async def test_edge_works_cut_off_and_the_hub_catches_up_exactly_once(
    setup: tuple[EdgeSetup, TcpProxy], hub_client: NATS
) -> None:
    """Acceptance 4: a cut leaf link; the edge keeps working; within 10 s of the link's return the hub has it all."""
    s, proxy = setup
    telemetry, detections = (n // 2 for n in sizes())
    hub_js = hub_client.jetstream()
    user, password = s.edge_credentials()
    edge_nc = await nats.connect(f"nats://127.0.0.1:{s.edge_nats_port}", user=user, password=password)
    try:
        edge_js = edge_nc.jetstream()
        device = await Device(edge_nc, ORG).start()
        async with api(s.edge.url, s.edge_key) as edge_api:
            await register(edge_api, ORG, ENTITIES)
        # Link up: the hub adopts the edge's entities and shows them with their edge and link state.
        await publish_reliably(edge_js, traffic(ORG, ENTITIES, 60, 0, "warm"))
        hub_db, edge_db = s.hub_node.db, NodeDb(s.edge.data_dir)
        await eventually(
            lambda: len(hub_db.rows("SELECT 1 FROM entities WHERE org_id = ?", (ORG,))) == len(ENTITIES),
            timeout=20,
            what="the hub adopted the edge's entities",
        )
        # Each entity is shown once its first state reached the hub (they arrive one by one).
        fleet = await eventually(
            lambda: _page_with(s.hub_node.url, s.hub_node.key, "/fleet", f"edge {EDGE} · link up", *ENTITIES),
            timeout=20,
            what="every edge entity on the hub's fleet page, link up",
        )
        assert all(e in fleet for e in ENTITIES)

        # Cut the link. Both sides notice; both stay ready (each works alone), degraded.
        proxy.cut()
        cut_at = time.monotonic()
        await eventually(lambda: _link(s.edge.url, "down"), timeout=10, what="edge sees the link down")
        await eventually(lambda: _link(s.hub_node.url, "down"), timeout=10, what="hub sees the link down")
        # The edge ingests with its console live, the hub issues two commands for an edge entity.
        counts = await publish_reliably(edge_js, traffic(ORG, ENTITIES, telemetry, detections, "cut"))
        assert counts["acked"] == telemetry + detections and counts["duplicates"] == 0
        assert "fld-0" in await page(s.edge.url, s.edge_key, "/fleet")
        assert (await ready(s.edge.url))["code"] == 200
        async with api(s.hub_node.url, s.hub_node.key) as hub_api:
            reaches = await hub_api.post(
                f"/api/v1/organizations/{ORG}/entities/fld-1/commands", json={"command": "hold"}
            )
            expires = await hub_api.post(
                f"/api/v1/organizations/{ORG}/entities/fld-2/commands", json={"command": "rtl", "ttl_s": 2}
            )
            # The hub never changes what the edge owns: its registry record, or its state from a local subject.
            refused = await hub_api.put(f"/api/v1/organizations/{ORG}/entities/fld-0", json={"name": "hub's name"})
        assert reaches.status_code == expires.status_code == 202, reaches.text
        assert refused.status_code == 409, refused.text
        reaches_id, expires_id = reaches.json()["command_id"], expires.json()["command_id"]
        assert "link down" in await page(s.hub_node.url, s.hub_node.key, "/entities/fld-1")
        await eventually(
            lambda: (command_status(hub_db, expires_id) or ("",))[0] == "expired", timeout=10, what="hub expiry"
        )
        # The cut lasts until the hub's sources have not heard from the edge for CUT_S seconds: by then the
        # servers retry them with a growing back-off, which the link probes must cut short on the return.
        await eventually(
            lambda: _silent_for(hub_client, EDGE, CUT_S), timeout=CUT_S + 15, interval=0.5, what="a long cut"
        )
        cut_for = time.monotonic() - cut_at

        # Restore: within 10 s the hub holds everything the edge buffered, exactly once.
        proxy.restore()
        back = time.monotonic()
        want_t, want_d = 60 + telemetry, detections
        prefix = topology.edge_prefix(EDGE)

        async def all_on_hub() -> bool:
            return (
                await stored(hub_js, topology.STREAM_EDGES, f"{prefix}.telemetry.{ORG}.>") >= want_t
                and await stored(hub_js, topology.STREAM_EDGES, f"{prefix}.events.isr.{ORG}.>") >= want_d
            )

        await eventually(all_on_hub, timeout=10, interval=0.05, what="the hub holds the edge's messages")
        caught_up = time.monotonic() - back
        assert await stored(hub_js, topology.STREAM_EDGES, f"{prefix}.telemetry.{ORG}.>") == want_t
        assert await stored(hub_js, topology.STREAM_EDGES, f"{prefix}.events.isr.{ORG}.>") == want_d
        # Nothing of the edge stored twice: not in the hub's own streams, and the edge's streams hold only its own.
        assert await stored(hub_js, topology.STREAM_TELEMETRY, f"constellation.telemetry.{ORG}.>") == 0
        assert await stored(edge_js, topology.STREAM_TELEMETRY, f"constellation.telemetry.{ORG}.>") == want_t

        # The command issued during the cut reaches the edge entity; the short one expired on both sides.
        done = ("completed", "completed by test device")
        try:
            await eventually(
                lambda: command_status(edge_db, reaches_id) == command_status(hub_db, reaches_id) == done,
                timeout=20,
                what="command completed on both sides",
            )
        except AssertionError as exc:
            states = f"edge {command_status(edge_db, reaches_id)}, hub {command_status(hub_db, reaches_id)}"
            raise AssertionError(f"{exc}: {states}") from None
        assert device.received.count(reaches_id) == 1 and expires_id not in device.received
        await eventually(
            lambda: (command_status(edge_db, expires_id) or ("",))[0] == "expired", timeout=10, what="edge expiry"
        )
        assert (command_status(hub_db, expires_id) or ("",))[0] == "expired"
        # Detections projected on the hub once each; the hub's page shows the link up again.
        await eventually(
            lambda: hub_db.rows("SELECT COUNT(*) FROM detections WHERE org_id = ?", (ORG,))[0][0] == want_d,
            timeout=15,
            what="hub detection history",
        )
        # Each side cut its sources' retry back-off short when the link returned, unless they already flowed
        # again: one hub node stepped the R3 leader down (the other found them flowing); the edge re-sourced
        # its one-replica commands stream (or its server's own retry came first).
        hub_pages = [await page(n.url, n.key, "/nats/server") for n in (s.hub_node, s.other_hub_node)]
        assert any("step-down" in p or "already flowing" in p for p in hub_pages), "the hub handled the return"
        edge_page = await page(s.edge.url, s.edge_key, "/nats/server")
        assert "re-source" in edge_page or "already flowing" in edge_page, "the edge handled the return"
        # Every hub node holds the same history of the edge's entities.
        other = s.other_hub_node.db
        await eventually(lambda: other.histories(ORG) == hub_db.histories(ORG), timeout=15, what="both hub nodes")
        await eventually(
            lambda: _page_with(s.hub_node.url, s.hub_node.key, "/entities/fld-1", f"edge {EDGE} · link up"),
            timeout=10,
            what="link up on the hub's entity page",
        )
        print(
            f"\nedge catch-up after a {cut_for:.0f} s cut: {want_t + want_d} messages on the hub in {caught_up:.2f} s"
        )
    finally:
        await edge_nc.close()


async def _page_with(url: str, key: str, path: str, *texts: str) -> str | None:
    html = await page(url, key, path)
    return html if all(text in html for text in texts) else None


async def _link(url: str, state: str) -> bool:
    body = await ready(url)
    links = body["checks"].get("links") or {}
    return body["code"] == 200 and f": {state}" in str(links.get("detail", ""))


async def _silent_for(nc: NATS, edge: str, seconds: float) -> bool:
    """Whether every source of the hub's edge stream from ``edge`` has been silent for ``seconds``."""
    msg = await nc.request(f"$JS.API.STREAM.INFO.{topology.STREAM_EDGES}", b"", timeout=2.0)
    sources = [
        src
        for src in json.loads(msg.data).get("sources") or []
        if (src.get("external") or {}).get("api") == f"$JS.{edge}.API"
    ]
    return bool(sources) and all(src.get("active", 0) * 1e-9 >= seconds for src in sources)
