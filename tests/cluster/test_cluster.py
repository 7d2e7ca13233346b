"""Acceptance 1–3 of issue #17: Overwatch nodes on a 3-server JetStream cluster (R3).

Message counts are small by default (2,000 telemetry + 100 detections per test) so the
group stays within the suite's budget; ``OVERWATCH_CLUSTER_FULL=1`` runs the issue's
sizes (10,000 + 500). Every wait has a deadline; nothing sleeps a fixed time.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from core import topology
from tests.cluster.conftest import Node
from tests.cluster.fabric import APP_PASSWORD, APP_USER, HubCluster
from tests.cluster.traffic import (
    Device,
    NodeDb,
    api,
    consumer_counts,
    publish_reliably,
    register,
    sizes,
    telemetry_payload,
    traffic,
)
from tests.conftest import ServerProcess
from tests.helpers import eventually

FULL = os.environ.get("OVERWATCH_CLUSTER_FULL") == "1"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300 if FULL else 90)]  # the sizes run longer


@pytest.fixture
async def client(hub: HubCluster) -> AsyncIterator[NATS]:
    """A test client on every member of the hub, reconnecting forever."""
    nc = await nats.connect(
        servers=hub.urls(user="", password=""),
        user=APP_USER,
        password=APP_PASSWORD,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.2,
    )
    try:
        yield nc
    finally:
        await nc.close()


async def last_seq(js: JetStreamContext, stream: str) -> int:
    """The stream's last sequence."""
    return int((await js.stream_info(stream)).state.last_seq or 0)


async def caught_up(js: JetStreamContext, db: NodeDb) -> bool:
    """Whether a node's projections applied everything stored in their streams."""
    cursors = db.cursors()
    wanted = {
        "events": await last_seq(js, topology.STREAM_EVENTS),
        "track-points": await last_seq(js, topology.STREAM_TRACKS),
        "commands": await last_seq(js, topology.STREAM_COMMANDS),
    }
    return all(cursors.get(name, -1) >= seq for name, seq in wanted.items())


async def kv_seq(js: JetStreamContext, entity: str) -> int | None:
    """``extras.seq`` of an entity's stored state: the last telemetry message applied.

    Read from the bucket stream's leader (a direct get may be answered by a replica that is behind).
    """
    subject = f"$KV.{topology.BUCKET_STATE}.{entity}"
    try:
        msg = await js.get_last_msg(topology.kv_stream(topology.BUCKET_STATE), subject)
        doc = msgspec.json.decode(msg.data or b"{}")
    except Exception:  # noqa: BLE001 - not written yet
        return None
    extras = doc.get("extras") or {}
    return extras.get("seq") if isinstance(extras, dict) else None


def histories_match(nodes: list[Node], org: str) -> dict[str, list[Any]] | None:
    """Both nodes' histories, when they are identical (``None`` while they differ)."""
    first, second = (n.db.histories(org) for n in nodes)
    return first if first == second else None


async def identical(nodes: list[Node], org: str, timeout: float = 15.0) -> dict[str, list[Any]]:
    """Wait for identical histories; on a timeout say what differs."""
    try:
        same: dict[str, list[Any]] = await eventually(
            lambda: histories_match(nodes, org), timeout=timeout, what="identical histories"
        )
    except AssertionError as exc:
        first, second = (n.db.histories(org) for n in nodes)
        diff = {
            k: (
                len(first[k]),
                len(second[k]),
                sorted(set(first[k]) - set(second[k]))[:3],
                sorted(set(second[k]) - set(first[k]))[:3],
            )
            for k in first
            if first[k] != second[k]
        }
        raise AssertionError(f"{exc}: {diff}") from None
    return same


async def test_two_nodes_hold_identical_complete_histories(nodes: list[Node], hub: HubCluster, client: NATS) -> None:
    """Acceptance 1: every node projects every message; telemetry is applied to KV once."""
    js = client.jetstream()
    org, telemetry, detections = "acc1", *sizes()
    entities = [f"acc1-e{i}" for i in range(8)]
    async with api(nodes[0].url, nodes[0].key) as a:
        await register(a, org, [*entities, "acc1-late"])
    await eventually(
        lambda: len(nodes[1].db.rows("SELECT 1 FROM entities WHERE org_id = ?", (org,))) == 9, what="registry on node 1"
    )
    device = await Device(client, org).start()
    before = await consumer_counts(js, topology.STREAM_TELEMETRY, topology.CONSUMER_TELEMETRY)
    messages = traffic(org, entities, telemetry, detections, "acc1")
    counts = await publish_reliably(js, messages)
    assert counts["acked"] == telemetry + detections

    # Commands through both nodes to live entities, and one queued for an entity that is not live yet.
    async with api(nodes[0].url, nodes[0].key) as a, api(nodes[1].url, nodes[1].key) as b:

        async def live() -> bool:
            states = [(await a.get(f"/api/v1/organizations/{org}/entities/{e}/state")).json() for e in entities]
            return all(s.get("is_live") for s in states)

        await eventually(live, what="entities live")
        sent = [
            await c.post(f"/api/v1/organizations/{org}/entities/{entities[i]}/commands", json={"command": "hold"})
            for i, c in enumerate((a, b, a, b))
        ]
        queued = await a.post(f"/api/v1/organizations/{org}/entities/acc1-late/commands", json={"command": "rtl"})
    assert all(r.status_code == 202 for r in [*sent, queued]), [r.text for r in sent]
    assert queued.json()["status"] == "queued"
    # The late entity comes back: both nodes see it; exactly one delivers its command.
    await publish_reliably(js, [(topology.telemetry_subject(org, "acc1-late"), telemetry_payload(9, 0), "acc1-late")])
    ids = [r.json()["command_id"] for r in [*sent, queued]]

    async def done() -> bool:
        rows = nodes[0].db.rows("SELECT status FROM commands WHERE org_id = ?", (org,))
        return len(rows) == 5 and {r[0] for r in rows} == {"completed"} and await caught_up(js, nodes[0].db)

    await eventually(done, timeout=30, what="commands completed on node 0")
    await eventually(lambda: caught_up(js, nodes[1].db), timeout=30, what="node 1 caught up")
    same = await identical(nodes, org)
    assert len(same["detections"]) == detections, "every detection event, once, on each node"
    assert same["alerts"] and same["tracks"], "threat alerts raised and tracks sampled"
    assert sorted(c[0] for c in same["commands"]) == sorted(ids)
    assert sorted(device.received) == sorted(ids), "each command reached the device exactly once"

    # Telemetry applied to KV once: each message delivered to one node, never again.
    last = await last_seq(js, topology.STREAM_TELEMETRY)
    after = await eventually(
        lambda: _acked_to(js, last), timeout=15, what="telemetry-processor acknowledged everything"
    )
    assert after[0] - before[0] == telemetry + 1, "delivered once each (plus the late entity's one)"
    assert after[1] == before[1], "nothing redelivered"
    await _all_applied(js, org, entities, timeout=10)


async def _acked_to(js: JetStreamContext, last: int) -> tuple[int, int, int] | None:
    counts = await consumer_counts(js, topology.STREAM_TELEMETRY, topology.CONSUMER_TELEMETRY)
    return counts if counts[2] >= last else None


async def ready(url: str) -> dict[str, Any] | None:
    """A node's readiness body, or ``None`` when it does not answer."""
    async with httpx.AsyncClient(timeout=3.0) as http:
        try:
            r = await http.get(f"{url}/health/ready")
        except httpx.HTTPError:
            return None
    return {"code": r.status_code, **r.json()}


async def stored(js: JetStreamContext, stream: str, subjects: str) -> int:
    """Messages stored on ``subjects`` (each id once: publishes carry ``Nats-Msg-Id``)."""
    info = await js.stream_info(stream, subjects_filter=subjects)
    return sum((info.state.subjects or {}).values())


async def leader_of(js: JetStreamContext, stream: str) -> str:
    """The stream's current leader."""
    info = await js.stream_info(stream)
    return info.cluster.leader if info.cluster and info.cluster.leader else ""


async def test_a_cluster_member_killed_during_ingest_loses_nothing(
    nodes: list[Node], hub: HubCluster, client: NATS
) -> None:
    """Acceptance 2: ``kill -9`` the telemetry stream's leader at 30 %; readiness shows it, then recovers."""
    js = client.jetstream()
    org, telemetry, detections = "acc2", *sizes()
    entities = [f"acc2-e{i}" for i in range(8)]
    async with api(nodes[0].url, nodes[0].key) as a:
        await register(a, org, entities)
    await eventually(
        lambda: len(nodes[1].db.rows("SELECT 1 FROM entities WHERE org_id = ?", (org,))) == len(entities),
        what="registry on node 1",
    )
    leader = await leader_of(js, topology.STREAM_TELEMETRY)
    victim = next(n for n in hub.nodes if n.name == leader)
    counts: dict[str, int] = {}
    ingest = asyncio.create_task(
        publish_reliably(js, traffic(org, entities, telemetry, detections, "acc2"), counts=counts)
    )
    await eventually(lambda: counts.get("acked", 0) >= (telemetry + detections) * 0.3, what="30 % acknowledged")
    victim.kill()
    await eventually(
        lambda: _all_degraded([n.url for n in nodes]), timeout=20, what="readiness shows the degraded cluster"
    )
    # Both keep serving while the cluster is degraded (readiness may say 503 for the seconds the
    # stream leaders are being elected: JetStream does not answer then).
    for node in nodes:
        async with api(node.url, node.key) as client:
            assert (await client.get(f"/api/v1/organizations/{org}/entities")).status_code == 200
    await asyncio.wait_for(ingest, 60)
    assert counts["acked"] == telemetry + detections
    victim.start()
    await asyncio.to_thread(victim.wait_ready)
    await eventually(lambda: _all_recovered([n.url for n in nodes]), timeout=40, what="readiness recovered")
    # No acknowledged message lost, none stored twice; both nodes applied and projected all of it.
    assert await stored(js, topology.STREAM_TELEMETRY, f"constellation.telemetry.{org}.>") == telemetry
    assert await stored(js, topology.STREAM_EVENTS, f"constellation.events.isr.{org}.>") == detections
    for node in nodes:
        await eventually(lambda n=node: caught_up(js, n.db), timeout=30, what=f"{node.url} caught up")
    same = await identical(nodes, org)
    assert len(same["detections"]) == detections
    await _all_applied(js, org, entities)


async def _kv_is(js: JetStreamContext, entity: str, want: int) -> bool:
    return await kv_seq(js, entity) == want


async def last_stored(js: JetStreamContext, org: str, entity: str) -> int:
    """``seq`` of the entity's last telemetry message *as stored*: what its state must show.

    Publishes re-sent after a timeout are stored later than others, so the stream's order,
    not the publisher's, says which message is the newest.
    """
    msg = await js.get_last_msg(topology.STREAM_TELEMETRY, topology.telemetry_subject(org, entity))
    return int(msgspec.json.decode(msg.data or b"{}")["seq"])


async def _all_applied(js: JetStreamContext, org: str, entities: list[str], timeout: float = 40.0) -> None:
    """Every entity's state holds its newest stored message (what a dead node held is redelivered after ack_wait)."""
    for entity in entities:
        want = await last_stored(js, org, entity)
        try:
            await eventually(lambda e=entity, w=want: _kv_is(js, e, w), timeout=timeout, what=entity)
        except AssertionError as exc:
            info = await js.consumer_info(topology.STREAM_TELEMETRY, topology.CONSUMER_TELEMETRY)
            raise AssertionError(
                f"{exc}: state has seq {await kv_seq(js, entity)}, want {want}; consumer ack pending "
                f"{info.num_ack_pending}, redelivered {info.num_redelivered}, pending {info.num_pending}"
            ) from None


async def _all_degraded(urls: list[str]) -> list[dict[str, Any]] | None:
    bodies = [await ready(u) for u in urls]
    ok = all(b and b["checks"]["cluster"].get("degraded") for b in bodies)
    return [b for b in bodies if b] if ok else None


async def _all_recovered(urls: list[str]) -> bool:
    bodies = [await ready(u) for u in urls]
    return all(b and b["code"] == 200 and not b["checks"]["cluster"].get("degraded") for b in bodies)


async def test_an_overwatch_node_killed_during_ingest_catches_up(
    nodes: list[Node], hub: HubCluster, client: NATS
) -> None:
    """Acceptance 3: ``kill -9`` one node at 30 %; the other applies everything; restarted, it catches up."""
    js = client.jetstream()
    org, telemetry, detections = "acc3", *sizes()
    entities = [f"acc3-e{i}" for i in range(8)]
    survivor, victim = nodes
    async with api(survivor.url, survivor.key) as a:
        await register(a, org, entities)
    await eventually(
        lambda: len(victim.db.rows("SELECT 1 FROM entities WHERE org_id = ?", (org,))) == len(entities),
        what="registry on the victim",
    )
    counts: dict[str, int] = {}
    ingest = asyncio.create_task(
        publish_reliably(js, traffic(org, entities, telemetry, detections, "acc3"), counts=counts)
    )
    await eventually(lambda: counts.get("acked", 0) >= (telemetry + detections) * 0.3, what="30 % acknowledged")
    victim.proc.stop(signal.SIGKILL)
    await asyncio.wait_for(ingest, 60)
    # The survivor applies everything: what the victim held unacknowledged is redelivered to it.
    await _all_applied(js, org, entities)
    await eventually(lambda: caught_up(js, survivor.db), timeout=20, what="survivor caught up")
    assert len(survivor.db.histories(org)["detections"]) == detections
    assert (await ready(survivor.url) or {}).get("code") == 200
    # Restarted on its data directory, the victim resumes its projections where they stopped.
    restarted = ServerProcess(victim.proc.data_dir, victim.proc.env, port=victim.proc.port).start()
    nodes[1] = Node(restarted, victim.key, victim.db)
    await restarted.ready(timeout=45)
    await eventually(lambda: caught_up(js, victim.db), timeout=30, what="restarted node caught up")
    same = await identical(nodes, org)
    assert len(same["detections"]) == detections and same["tracks"]
