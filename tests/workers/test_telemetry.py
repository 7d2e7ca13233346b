"""TelemetryWorker: scopes into KV, coalescing, tracks, liveness, alerts."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec

from app.runtime import Runtime
from core import topology
from db import alerts as alerts_db
from db import tracks as tracks_db
from tests.helpers import eventually, seed, state, stream_messages, telemetry


async def test_telemetry_lands_in_state_scopes(runtime: Runtime) -> None:
    (e0, _e1) = await seed(runtime)
    await runtime.js.publish(topology.telemetry_subject("org1", e0), telemetry(lat=37.1, battery=55.0))
    doc = await eventually(lambda: state(runtime, e0), what="state written")
    doc = await eventually(lambda: _with(runtime, e0, lambda d: d.get("power")), what="power scope")
    assert doc["position"]["global"]["latitude"] == 37.1
    assert doc["power"]["battery_remaining"] == 55.0
    assert doc["is_live"] is True and doc["status"] == "active"
    assert doc["entity_type"] == "aircraft_multirotor" and doc["org_id"] == "org1"
    for key in ("entity_id", "device_id", "updated_at", "mission", "detections", "analytics"):
        assert key in doc


async def _with(runtime: Runtime, entity_id: str, pred: Any) -> dict[str, Any] | None:
    doc = await state(runtime, entity_id)
    return doc if doc and pred(doc) else None


async def test_bursts_coalesce_with_bounded_write_rate(make_runtime: Any) -> None:
    rt: Runtime = await make_runtime(telemetry_max_hz=5.0)
    (e0,) = await seed(rt, entities=1)
    worker = next(w for w in rt.workers.workers if w.name == "telemetry")
    subject = topology.telemetry_subject("org1", e0)
    started = time.monotonic()
    for i in range(300):
        await rt.nc.publish(subject, telemetry(battery=float(i % 100), extras_seq=i))  # type: ignore[union-attr]
    await rt.nc.flush()  # type: ignore[union-attr]
    await eventually(lambda: worker.stats.processed >= 300, what="all 300 processed")
    elapsed = time.monotonic() - started
    writes = worker.store.writes
    assert writes <= 5.0 * elapsed + 2, f"{writes} writes in {elapsed:.2f}s exceeds 5 Hz"
    doc = await state(rt, e0)
    assert doc is not None and doc["extras"]["extras_seq"] == 299, "latest message must win"


async def test_track_points_are_stored_downsampled(make_runtime: Any) -> None:
    """A point at most every ``track_interval`` seconds of *stream* time (what every node of a cluster
    agrees on): the stored points are exactly the greedy sample of the messages' storage times."""
    rt: Runtime = await make_runtime(track_interval=0.25)
    (e0,) = await seed(rt, entities=1)
    seqs = []
    for i in range(10):
        ack = await rt.js.publish(topology.telemetry_subject("org1", e0), telemetry(lat=37.0 + i * 0.001))
        seqs.append(ack.seq)
        await asyncio.sleep(0.1)  # pacing the traffic (about 2.5 messages per interval), not waiting for a result
    stored = [(await rt.js.get_msg(topology.STREAM_TELEMETRY, seq)).time for seq in seqs]
    times = [t.timestamp() for t in stored if t is not None]
    expected: list[float] = []
    for t in times:
        if not expected or t - expected[-1] >= 0.25 - 1e-5:
            expected.append(t)
    await eventually(lambda: _points_at_least(rt, e0, len(expected)), what="track points")
    points = await tracks_db.recent_track(rt.db, e0, time.time() - 60)
    assert len(points) == len(expected) and 2 <= len(points) <= 8, (len(points), len(expected))
    assert all(abs(p.ts - t) < 1e-3 for p, t in zip(points, expected, strict=True))
    assert [p.latitude for p in points] == sorted(p.latitude for p in points)


async def _points_at_least(rt: Runtime, entity_id: str, n: int) -> int:
    count = await tracks_db.count_points(rt.db, entity_id)
    return count if count >= n else 0


async def test_silence_marks_offline_then_back_online(make_runtime: Any) -> None:
    rt: Runtime = await make_runtime(offline_after=1.0)
    (e0,) = await seed(rt, entities=1)
    status_sub = await rt.js.subscribe(topology.entity_lifecycle_subject("org1", "status"), ordered_consumer=True)
    await rt.js.publish(topology.telemetry_subject("org1", e0), telemetry())
    await eventually(lambda: _with(rt, e0, lambda d: d.get("is_live")), what="live")
    await eventually(lambda: _with(rt, e0, lambda d: d.get("is_live") is False), timeout=6, what="offline")
    alert = await eventually(lambda: alerts_db.get_alert(rt.db, f"offline:{e0}"), what="offline alert")
    assert alert.status == "active" and alert.kind == "offline"
    event = msgspec.json.decode((await status_sub.next_msg(timeout=10)).data)
    if event["data"]["is_live"]:
        # The entity's first value (written from its ``created`` event) was offline: going live was a transition too.
        event = msgspec.json.decode((await status_sub.next_msg(timeout=10)).data)
    assert event["type"] == "status" and event["data"]["is_live"] is False
    await rt.js.publish(topology.telemetry_subject("org1", e0), telemetry())
    await eventually(lambda: _with(rt, e0, lambda d: d.get("is_live")), what="live again")
    cleared = await eventually(lambda: _active_is(rt, f"offline:{e0}", "cleared"), what="alert cleared")
    assert cleared
    await status_sub.unsubscribe()


async def _active_is(rt: Runtime, alert_id: str, status: str) -> bool:
    row = await alerts_db.get_alert(rt.db, alert_id)
    return row is not None and row.status == status


async def test_low_battery_raises_and_recovery_clears(runtime: Runtime) -> None:
    (e0,) = await seed(runtime, entities=1)
    await runtime.js.publish(topology.telemetry_subject("org1", e0), telemetry(battery=12.0))
    row = await eventually(lambda: alerts_db.get_alert(runtime.db, f"battery:{e0}"), what="battery alert")
    assert row.severity == "warning" and "20%" in row.reason
    await runtime.js.publish(topology.telemetry_subject("org1", e0), telemetry(battery=90.0))
    assert await eventually(lambda: _active_is(runtime, f"battery:{e0}", "cleared"), what="battery cleared")


async def test_mavlink_envelope(runtime: Runtime) -> None:
    (e0,) = await seed(runtime, entities=1)
    body = {
        "message_type": "GPS_RAW_INT",
        "data": {"lat": 374000000, "lon": -1221000000, "alt": 50000},
        "timestamp": "2026-01-01T00:00:00Z",
    }
    await runtime.js.publish(topology.telemetry_subject("org1", e0), msgspec.json.encode(body))
    doc = await eventually(lambda: _with(runtime, e0, lambda d: d.get("position")), what="position")
    assert abs(doc["position"]["global"]["latitude"] - 37.4) < 1e-9
    assert doc["position"]["global"]["altitude_msl"] == 50.0
    assert not await stream_messages(runtime.js, topology.STREAM_DLQ)


async def test_telemetry_repairs_a_state_value_that_names_another_organisation(runtime: Runtime) -> None:
    """The registry names the organisation: a forged ``org_id`` in the stored value is overwritten."""
    (e0, _e1) = await seed(runtime)
    await runtime.js.publish(topology.telemetry_subject("org1", e0), telemetry(battery=50.0))
    await eventually(lambda: state(runtime, e0), what="state written")
    forged = dict(await state(runtime, e0) or {})
    forged["org_id"] = "someone-else"
    del forged["entity_type"], forged["name"]  # a forged value that lost the registry's fields
    await runtime.kv_state.put(e0, msgspec.json.encode(forged))
    await runtime.js.publish(topology.telemetry_subject("org1", e0), telemetry(battery=49.0))
    doc = await eventually(
        lambda: _with(runtime, e0, lambda d: d.get("org_id") == "org1" and d["power"]["battery_remaining"] == 49.0),
        what="org_id repaired by the next telemetry",
    )
    assert doc is not None and doc["entity_type"] == "aircraft_multirotor" and doc["name"]


async def test_a_redelivered_older_message_does_not_roll_the_state_back(runtime: Runtime) -> None:
    """After a crash JetStream redelivers what was left unacknowledged, not necessarily in order: the newest message
    written for a scope wins (the value remembers its stream sequence), an older one arriving later is not applied."""
    (e0,) = await seed(runtime, entities=1)
    subject = topology.telemetry_subject("org1", e0)
    await runtime.js.publish(subject, telemetry(battery=10.0))
    await runtime.js.publish(subject, telemetry(battery=20.0))
    await eventually(
        lambda: _with(runtime, e0, lambda d: (d.get("power") or {}).get("battery_remaining") == 20.0), what="applied"
    )
    # The same two messages again (real deliveries, from a second consumer), the newer one first.
    pull = await runtime.js.pull_subscribe(subject, durable="reordered")
    older, newer = await pull.fetch(2, timeout=5)
    worker: Any = next(w for w in runtime.workers.workers if w.name == "telemetry")
    for msg in (newer, older):
        await worker.handle_batch([msg])
        await worker.flush(due_only=False)
    doc = await state(runtime, e0)
    assert doc is not None and doc["power"]["battery_remaining"] == 20.0, doc
    assert doc["telemetry_seq"]["scopes"]["power"] == newer.metadata.sequence.stream, doc["telemetry_seq"]
