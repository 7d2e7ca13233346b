"""Scope isolation: concurrent CAS writers on one key never lose each other's scopes."""

from __future__ import annotations

import asyncio
from typing import Any

import nats

from core import topology
from fabric.server import EmbeddedNats
from fabric.state_store import StateStore, deep_merge, reported_last_sequence


async def test_two_concurrent_writers_lose_nothing(nats_server: EmbeddedNats) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    try:
        await topology.ensure_topology(js, None)
        kv = await js.key_value(topology.BUCKET_STATE)
        telemetry, detections = StateStore(kv, "telemetry"), StateStore(kv, "detection")
        n = 150

        async def write_telemetry() -> None:
            for i in range(n):

                def mutate(doc: dict[str, Any], i: int = i) -> bool:
                    doc["power"] = {"battery_remaining": float(i)}
                    doc["telemetry_seq"] = i
                    return True

                await telemetry.merge("e1", mutate)

        async def write_detections() -> None:
            for i in range(n):

                def mutate(doc: dict[str, Any], i: int = i) -> bool:
                    objects = dict((doc.get("detections") or {}).get("objects") or {})
                    objects[f"t{i}"] = {"track_id": f"t{i}", "label": "person", "confidence": 0.9}
                    doc["detections"] = {"objects": objects}
                    doc["detection_seq"] = i
                    return True

                await detections.merge("e1", mutate)

        await asyncio.gather(write_telemetry(), write_detections())
        entry = await kv.get("e1")
        import msgspec

        doc = msgspec.json.decode(entry.value or b"")
        assert doc["telemetry_seq"] == n - 1 and doc["power"]["battery_remaining"] == n - 1
        assert doc["detection_seq"] == n - 1
        assert len(doc["detections"]["objects"]) == n, "a detection write was lost"
        assert telemetry.conflicts + detections.conflicts > 0, "the test did not exercise a conflict"
        assert entry.revision == 2 * n
    finally:
        await nc.close()


def test_deep_merge_is_pure() -> None:
    base = {"a": {"x": 1, "y": {"z": 2}}, "b": [1]}
    patch = {"a": {"y": {"w": 3}}, "b": [2]}
    merged = deep_merge(base, patch)
    assert merged == {"a": {"x": 1, "y": {"z": 2, "w": 3}}, "b": [2]}
    assert base == {"a": {"x": 1, "y": {"z": 2}}, "b": [1]}


class _MarkerBlindStore(StateStore):
    """A store whose reads do not see delete markers (as with a client library that hides them)."""

    async def read(self, entity_id: str) -> tuple[int, dict[str, Any] | None]:
        revision, value = await super().read(entity_id)
        return (revision, value) if value is not None else (0, None)


async def test_conflict_names_the_last_sequence_when_a_read_cannot(nats_server: EmbeddedNats) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await topology.ensure_topology(js, None)
        kv = await js.key_value(topology.BUCKET_STATE)
        store = _MarkerBlindStore(kv, "blind")
        await store.merge("e1", lambda doc: True)
        marker_at = (await kv.status()).stream_info.state.last_seq + 1
        await kv.delete("e1")
        rev = await store.merge("e1", lambda doc: True)
        assert rev == marker_at + 1 and store.conflicts == 1  # the stale cache only, not 20 in a row
        assert (await kv.get("e1")).revision == rev
    finally:
        await nc.close()


def test_reported_last_sequence() -> None:
    assert reported_last_sequence("wrong last sequence: 42") == 42
    assert reported_last_sequence("wrong last sequence: 0") == 0
    assert reported_last_sequence("something else") is None and reported_last_sequence(None) is None
