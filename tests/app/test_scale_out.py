"""Scale-out pieces without a cluster: settings, topology, node id, the commands scope, per-node projections.

The cluster and the edge are exercised with real processes in ``tests/cluster``; here two
in-process nodes share one real ``nats-server`` — the setup in which issue #17 measured
each node holding half of the detections.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import msgspec
import nats
import pytest

from app.node import NodeIdError, load_or_create_node_id
from app.runtime import Runtime, StartupError
from core import topology
from core.settings import ConfigError, Settings
from db import commands as commands_db
from db import projections as cursors_db
from fabric.client import redacted, server_address
from fabric.cluster_status import ClusterSnapshot, Peer, StreamCluster
from fabric.links import EdgeLinks
from fabric.scale_out import ScaleOutConfig
from services.commands import merge_recent
from services.schemas import CommandCreate
from tests.cluster.traffic import Device, detection_payload, telemetry_payload
from tests.helpers import eventually, seed


# ---------------------------------------------------------------- settings, names, config
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"nats_replicas": 0}, "NATS_REPLICAS must be 1..5"),
        ({"nats_leaf_remote": "nats-leaf://hub:7422"}, "NATS_LEAF_REMOTE needs NATS_DOMAIN"),
        ({"nats_leaf_remote": "nats-leaf://hub:7422", "nats_domain": "hub"}, "must differ from the hub's domain"),
        ({"nats_leaf_remote": "hub:7422", "nats_domain": "e1"}, "must look like nats-leaf://"),
        ({"nats_leaf_remote": "nats-leaf://h:1", "nats_domain": "e1", "nats_url": "nats://x:4222"}, "embedded"),
        ({"nats_domain": "a.b"}, "NATS_DOMAIN 'a.b'"),
        ({"edges": "e1,e1"}, "lists an edge twice"),
        ({"edges": "hub"}, "the hub's domain"),
        ({"nats_system_user": "sys"}, "NATS_SYSTEM_PASSWORD"),
        ({"nats_leaf_creds": "/x.creds"}, "without NATS_LEAF_REMOTE"),
    ],
)
def test_scale_out_settings_are_checked(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings(**fields)


def test_edge_subjects_stay_apart_from_local_ones() -> None:
    local = topology.telemetry_subject("org1", "e-1")
    on_hub = topology.edge_subject("edge1", local)
    assert on_hub == "constellation.edge.edge1.telemetry.org1.e-1"
    assert topology.split_edge(on_hub) == ("edge1", local)
    assert topology.split_edge(local) == ("", local)
    sources = {s.name: s for s in topology.edge_sources("edge1")}
    assert set(sources) == {
        topology.STREAM_TELEMETRY,
        topology.STREAM_EVENTS,
        topology.STREAM_ENTITIES,
        topology.STREAM_COMMANDS,
        topology.kv_stream(topology.BUCKET_REGISTRY),
    }
    assert all(s.external and s.external.api == "$JS.edge1.API" for s in sources.values())
    # Every transformed subject lands under the edge's prefix (never on the hub's own subjects).
    dests = [t.dest for s in sources.values() for t in s.subject_transforms or ()]
    assert all(d.startswith("constellation.edge.edge1.") for d in dests)
    commands = sources[topology.STREAM_COMMANDS].subject_transforms or []
    assert {t.src for t in commands} == {"constellation.commands.*.*.ack", "constellation.commands.*.*.state.*"}
    outbox = topology.hub_outbox_source("edge1", "hub")
    assert outbox.external and outbox.external.api == "$JS.hub.API"
    assert (outbox.subject_transforms or [])[0].src == "constellation.edge.edge1.outbox.*.*.*"


def test_desired_streams_carry_replicas_and_sources() -> None:
    streams = {c.name: c for c in topology.desired_streams(None, replicas=3, edges=("e1", "e2"))}
    assert {c.num_replicas for c in streams.values()} == {3}
    assert len(streams[topology.STREAM_EDGES].sources or []) == 10
    edge = {c.name: c for c in topology.desired_streams(None, leaf=("e1", "hub"))}
    assert topology.STREAM_EDGES not in edge and len(edge[topology.STREAM_COMMANDS].sources or []) == 1


def test_embedded_server_config_of_an_edge() -> None:
    text = "\n".join(ScaleOutConfig("edge1", ("nats-leaf://l:p@hub:7422",), "", "pw").blocks())
    leaf = msgspec.json.decode(text.split("leafnodes ", 1)[1])
    remote = leaf["remotes"][0]
    assert remote["deny_exports"] == remote["deny_imports"] == ["constellation.>", "$KV.>"]
    assert "system_account: SYS" in text
    assert ScaleOutConfig("edge1").server_name == "overwatch-edge1" and ScaleOutConfig().server_name == "overwatch"


def test_cluster_urls_never_show_their_passwords() -> None:
    url = "nats://overwatch:secret-pw@10.0.0.1:4222"
    assert server_address(urlparse(url)) == "10.0.0.1:4222"
    assert "secret-pw" not in redacted([url, "nats://10.0.0.2:4222"])


def test_node_id_is_generated_once_and_kept(tmp_path: Path) -> None:
    first = load_or_create_node_id(tmp_path)
    assert first == load_or_create_node_id(tmp_path) and first.startswith("n")
    assert (tmp_path / "node-id").stat().st_mode & 0o077 == 0
    (tmp_path / "node-id").write_text("not a node id!\n")
    with pytest.raises(NodeIdError, match="not a node id"):
        load_or_create_node_id(tmp_path)


def test_commands_scope_never_goes_back() -> None:
    def entry(cid: str, status: str, issued: str, detail: str = "") -> dict[str, Any]:
        return {"command_id": cid, "status": status, "issued_at": issued, "updated_at": issued, "detail": detail}

    recent = [entry("a", "completed", "2026-01-01T00:00:02Z"), entry("b", "queued", "2026-01-01T00:00:01Z")]
    assert merge_recent(recent, entry("a", "delivered", "2026-01-01T00:00:02Z")) is None, "older status refused"
    merged = merge_recent(recent, entry("b", "delivered", "2026-01-01T00:00:01Z"))
    assert merged is not None and [e["status"] for e in merged] == ["completed", "delivered"], "others kept"
    # Ten newest by issue time; an older command than all of them changes nothing.
    full = [entry(f"c{i}", "queued", f"2026-01-01T00:00:{10 + i}Z") for i in range(10)]
    assert merge_recent(full, entry("old", "queued", "2026-01-01T00:00:00Z")) is None
    assert merge_recent([entry("x", "expired", "t")], entry("x", "completed", "t")) is None
    assert merge_recent([entry("x", "expired", "t")], entry("x", "completed", "t"), overrides_expired=True)


def test_degraded_cluster_is_named() -> None:
    peers = [Peer(name="n1", current=True, active_s=0.0, leader=True), Peer(name="n2", current=False, active_s=12.0)]
    snap = ClusterSnapshot(
        taken_at=0.0,
        system_access=True,
        cluster_name="hub",
        meta_leader="n1",
        cluster_size=3,
        servers_answering=["n1", "n3"],
        meta_peers=peers,
        streams=[StreamCluster(stream="S", replicas=3, leader="n1", peers=peers)],
    )
    assert snap.clustered and snap.degraded == ["meta peers not current: n2", "stream replicas behind: n2"]
    assert "meta leader n1" in snap.summary()


# ---------------------------------------------------------------- two nodes on one server
async def test_every_node_projects_every_event(make_runtime: Any, runtime: Runtime) -> None:
    """The issue's measurement: two nodes, 200 detections — each must hold all 200 (was 100 each)."""
    other: Runtime = await make_runtime()
    assert other.node_id != runtime.node_id
    ids = await seed(runtime, entities=4)
    await eventually(lambda: all(other.services.state_cache.org_of(e) for e in ids), what="registry on the other")
    for n in range(200):
        entity = ids[n % 4]
        await runtime.js.publish(topology.detection_subject("org1", entity), detection_payload("org1", entity, "t", n))
    for node in (runtime, other):
        await eventually(lambda rt=node: _has(rt, "detections", 200), what="all 200 detections on each node")
    first, second = await _alerts(runtime), await _alerts(other)
    assert first and first == second, "the same alerts, stamped with the stream's time"
    consumers = {c.name for c in await _consumers(runtime, topology.STREAM_EVENTS)}
    assert {f"ow-{runtime.node_id}-events", f"ow-{other.node_id}-events"} <= consumers


async def test_one_node_delivers_a_command_both_saw_come_back(make_runtime: Any, runtime: Runtime) -> None:
    other: Runtime = await make_runtime()
    (entity,) = await seed(runtime, entities=1)
    await eventually(lambda: other.services.state_cache.org_of(entity), what="registry on the other")
    assert runtime.nc is not None
    device = await Device(runtime.nc, "org1").start()
    queued = await runtime.services.commands.send("org1", entity, CommandCreate(command="hold"))
    assert queued.status == "queued"
    await eventually(lambda: _status(other, queued.command_id), what="the journal reached the other node")
    await runtime.js.publish(topology.telemetry_subject("org1", entity), telemetry_payload(0, 1))
    for node in (runtime, other):
        await eventually(lambda rt=node: _is(rt, queued.command_id, "completed"), what="completed everywhere")
    assert device.received == [queued.command_id], "delivered once, though both nodes saw the entity come back"
    journal = await runtime.services.commands.last_record(await commands_db.get_command(runtime.db, queued.command_id))  # type: ignore[arg-type]
    assert journal[1] is not None and journal[1].row.status == "delivered"
    # Re-claiming a delivered command is refused by the journal, whichever node asks.
    row = await commands_db.get_command(other.db, queued.command_id)
    assert row is not None and await other.services.commands.claim(row, "delivered", "") is None


async def test_a_restarted_node_resumes_its_projections_without_duplicates(make_runtime: Any, tmp_path: Path) -> None:
    data = str(tmp_path / "node")
    first: Runtime = await make_runtime(data_dir=data)
    ids = await seed(first, entities=2)
    for n in range(20):
        await first.js.publish(
            topology.detection_subject("org1", ids[n % 2]), detection_payload("org1", ids[n % 2], "t", n)
        )
    await eventually(lambda: _has(first, "detections", 20), what="20 detections")
    node_id = first.node_id
    await first.stop()
    again: Runtime = await make_runtime(data_dir=data)
    assert again.node_id == node_id, "the node id lives in the data dir"
    for n in range(20, 30):
        await again.js.publish(
            topology.detection_subject("org1", ids[n % 2]), detection_payload("org1", ids[n % 2], "t", n)
        )
    await eventually(lambda: _has(again, "detections", 30), what="resumed: the next 10, nothing twice")
    assert await _count(again, "detections") == 30
    cursor = await cursors_db.load_cursor(again.db, "events")
    info = await again.js.stream_info(topology.STREAM_EVENTS)
    assert cursor == info.state.last_seq


async def test_more_replicas_than_servers_stop_the_start_with_the_reason(settings: Settings, tmp_path: Path) -> None:
    rt = Runtime(msgspec.structs.replace(settings, data_dir=str(tmp_path / "r3"), nats_replicas=3))
    try:
        with pytest.raises(StartupError, match="replicas"):
            await rt.start()
    finally:
        await rt.stop()  # safe after a partial start: closes what was opened


async def _has(rt: Runtime, table: str, n: int) -> bool:
    return await _count(rt, table) == n


async def _is(rt: Runtime, command_id: str, status: str) -> bool:
    return await _status(rt, command_id) == status


async def _count(rt: Runtime, table: str) -> int:
    return int(await rt.db.scalar(f"SELECT COUNT(*) FROM {table}") or 0)


async def _alerts(rt: Runtime) -> list[tuple[Any, ...]]:
    rows = await rt.db.fetch_rows("SELECT alert_id, severity, status, created_at, updated_at FROM alerts ORDER BY 1")
    return [tuple(r) for r in rows]


async def _consumers(rt: Runtime, stream: str) -> list[Any]:
    return [c for c in await rt.js.consumers_info(stream)]


async def _status(rt: Runtime, command_id: str) -> str | None:
    row = await commands_db.get_command(rt.db, command_id)
    return row.status if row else None


async def test_link_return_re_sources_a_one_replica_stream(nats_server: Any) -> None:
    """The back-off cut on a one-replica stream: its sources removed and added again, nothing else changed."""
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await topology.ensure_topology(js, None, leaf=("edge9", "hub"))
        links = EdgeLinks(nc, js, "edge", ["hub"], own_domain="edge9")
        assert not await links.probe("hub"), "no hub behind this server"
        assert not await links.flowing("hub"), "a source that never reached its stream is not flowing"
        assert await links.cut_backoff("hub") == "re-source"
        sources = (await js.stream_info(topology.STREAM_COMMANDS)).config.sources or []
        assert [topology.source_key(s) for s in sources] == [
            topology.source_key(topology.hub_outbox_source("edge9", "hub"))
        ]
        state = links.state("hub")
        assert state is not None and state.cuts == 1 and state.last_cut == "re-source"
        assert links.check_ready()["ok"] is True
    finally:
        await nc.close()


async def test_a_restarted_node_samples_tracks_from_its_last_stored_point(make_runtime: Any, tmp_path: Path) -> None:
    """A node restarted within an entity's track interval stores no extra point (as the nodes that ran on do)."""
    data = str(tmp_path / "node")
    first: Runtime = await make_runtime(data_dir=data, track_interval=3600.0)
    (e0,) = await seed(first, entities=1)
    await first.js.publish(topology.telemetry_subject("org1", e0), telemetry_payload(0, 0))
    await eventually(lambda: _has(first, "tracks", 1), what="the first point")
    await first.stop()
    again: Runtime = await make_runtime(data_dir=data, track_interval=3600.0)
    ack = await again.js.publish(topology.telemetry_subject("org1", e0), telemetry_payload(0, 1))
    await eventually(lambda: _applied(again, ack.seq), what="the restarted node applied the second message")
    last = int((await again.js.stream_info(topology.STREAM_TRACKS)).state.last_seq or 0)
    await eventually(lambda: _cursor_at(again, "track-points", last), what="its track projection read every point")
    assert last == 1 and await _count(again, "tracks") == 1


async def _applied(rt: Runtime, seq: int) -> bool:
    info = await rt.js.consumer_info(topology.STREAM_TELEMETRY, topology.CONSUMER_TELEMETRY)
    return int(info.ack_floor.stream_seq if info.ack_floor else 0) >= seq


async def _cursor_at(rt: Runtime, projection: str, seq: int) -> bool:
    return (await cursors_db.load_cursor(rt.db, projection) or 0) >= seq
