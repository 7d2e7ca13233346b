"""Hostile input: every bad message lands in the DLQ with a reason, workers keep running,
and the valid traffic interleaved with it is all applied."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from app import topology
from app.runtime import Runtime
from tests.helpers import dlq, eventually, seed, state, telemetry
from workers import base

pytestmark = pytest.mark.slow

T = "constellation.telemetry"

# (subject, payload, expected fragment of the DLQ reason)
TELEMETRY_CORPUS: list[tuple[str, bytes, str]] = [
    (f"{T}.org1.ent-0", b"{not json", "invalid JSON"),
    (f"{T}.org1.ent-0", b"", "invalid JSON"),
    (f"{T}.org1.ent-0", b"[1, 2, 3]", "expected a JSON object"),
    (f"{T}.org1.ent-0", b'{"power": {"battery_remaining": "full"}}', "power"),
    (f"{T}.org1.ent-0", b'{"position": {"global": {"latitude": "north"}}}', "position"),
    (f"{T}.org1.ent-0", b'{"detections": {"objects": {}}}', "owned by another writer"),
    (f"{T}.org1.ent-0", b'{"power": {"battery_remaining": NaN}}', "invalid JSON"),
    (f"{T}.org1.ent-0", b'{"x": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply"),
    (f"{T}.org1.ent-0", b'{"pad": "' + b"x" * 100_000 + b'"}', "exceeds"),
    (f"{T}.org1.ent-0", b"{}", "no telemetry scope"),
    (f"{T}.org1.*", telemetry(), "invalid subject tokens"),
    (f"{T}.org1.>", telemetry(), "invalid subject tokens"),
    (f"{T}.*.ent-0", telemetry(), "invalid subject tokens"),
    (f"{T}.org1", telemetry(), "unexpected telemetry subject"),
    (f"{T}.org1.ent-0.extra", telemetry(), "unexpected telemetry subject"),
    (f"{T}.org2.ent-0", telemetry(), "belongs to organisation org1"),
    (f"{T}.org1.ghost", telemetry(), "unknown entity ghost"),
]

DETECTION = {
    "timestamp": "2026-01-01T00:00:00Z",
    "event_type": "detection",
    "entity_id": "ent-1",
    "org_id": "org1",
    "detection": {
        "track_id": "t1",
        "model_type": "m",
        "label": "person",
        "confidence": 0.9,
        "bbox": {"x_min": 0.1, "y_min": 0.1, "x_max": 0.2, "y_max": 0.2},
        "timestamp": "2026-01-01T00:00:00Z",
    },
}


def _det(**changes: Any) -> bytes:
    body = msgspec.json.decode(msgspec.json.encode(DETECTION))
    for key, value in changes.items():
        if key.startswith("det_"):
            body["detection"][key[4:]] = value
        else:
            body[key] = value
    return msgspec.json.encode(body)


OTHER_CORPUS: list[tuple[str, bytes, str]] = [
    ("constellation.events.isr.org1.ent-1", _det(det_confidence=5.0), "confidence"),
    ("constellation.events.isr.org1.ent-1", _det(det_bbox=None), "bbox"),
    ("constellation.events.isr.org1.ent-1", _det(entity_id="ent-0"), "does not match subject"),
    ("constellation.events.isr.org1.ent-1", _det(org_id="org9"), "does not match subject"),
    ("constellation.events.isr.org1.ent-1", b"\x00\x01binary", "invalid JSON"),
    ("constellation.events.isr.org1", _det(), "unexpected event subject"),
    ("constellation.events.bootsequence.org1.nobody", b'{"event_type": "bootsequence"}', "unknown entity nobody"),
    ("constellation.events.status.org1.ent-1", b'{"event_type": 12}', "event_type"),
    ("constellation.entities.org1.created", b'{"id": 1}', "schema"),
    ("constellation.entities.org1.exploded", b"{}", "unexpected lifecycle subject"),
    (
        "constellation.entities.org1.status",
        b'{"id": "x", "type": "status", "timestamp": "t", "source": "x",'
        b' "data": {"entity_id": "ent-1", "status": "on-fire"}}',
        "unknown status",
    ),
    ("constellation.commands.org1.ent-1.ack", b'{"command_id": "nope", "status": "completed"}', "not found"),
    ("constellation.commands.org1.ent-1.ack", b'{"command_id": "c1", "status": "exploded"}', "status"),
    ("constellation.commands.org1.broadcast.ack", b'{"command_id": "c1", "status": "completed"}', "broadcast"),
    ("constellation.commands.org1.ent-1", b'{"command": "goto"}', "schema"),
]


async def test_hostile_corpus(runtime: Runtime) -> None:
    e0, e1 = await seed(runtime, entities=2)
    js = runtime.js
    corpus = TELEMETRY_CORPUS + OTHER_CORPUS
    valid_seq = 0
    for subject, payload, _reason in corpus:
        valid_seq += 1
        await js.publish(topology.telemetry_subject("org1", e0), telemetry(seq=valid_seq))
        await js.publish(topology.telemetry_subject("org1", e1), telemetry(seq=valid_seq))
        await js.publish(subject, payload)
    # Over the stream's own size limit: refused at publish time, so nothing is accepted and lost.
    with pytest.raises(Exception, match="maximum message size|message size exceeds"):
        await js.publish(topology.telemetry_subject("org1", e0), b'{"pad": "' + b"x" * 200_000 + b'"}')

    dead = await eventually(lambda: _dead_count(runtime, len(corpus)), timeout=30, what="every bad message in DLQ")
    by_subject: dict[tuple[str, bytes], str] = {}
    for msg in dead:
        headers = msg.headers or {}
        assert headers.get(base.DLQ_REASON), "every dead letter carries a reason"
        assert headers.get(base.DLQ_WORKER) and headers.get(base.DLQ_STREAM)
        by_subject[(headers[base.DLQ_SUBJECT], msg.data or b"")] = headers[base.DLQ_REASON]
    for subject, payload, reason in corpus:
        got = by_subject.get((subject, payload))
        assert got is not None, f"missing from DLQ: {subject} {payload[:40]!r}"
        assert reason.lower() in got.lower(), f"{subject}: reason {got!r} lacks {reason!r}"

    # Valid traffic interleaved with the corpus was all applied (latest wins).
    for entity_id in (e0, e1):
        doc = await eventually(lambda eid=entity_id: _seq_is(runtime, eid, valid_seq), what=f"{entity_id} final seq")
        assert doc
    assert all(w.stats.restarts == 0 for w in runtime.workers.workers), runtime.workers.stats()
    assert all(runtime.workers.status().values())
    checks = await runtime.readiness()
    assert all(c["ok"] for c in checks.values()), checks
    await asyncio.sleep(0)


async def _dead_count(runtime: Runtime, want: int) -> list[Any] | None:
    dead = await dlq(runtime.js)
    return dead if len(dead) >= want else None


async def _seq_is(runtime: Runtime, entity_id: str, seq: int) -> bool:
    doc = await state(runtime, entity_id)
    return bool(doc and (doc.get("extras") or {}).get("seq") == seq)
