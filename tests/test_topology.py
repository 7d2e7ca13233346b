"""Topology as data: created once, idempotent, updated on change, clear errors."""

from __future__ import annotations

import nats
import pytest
from nats.js.api import RetentionPolicy

from core import topology
from fabric.server import EmbeddedNats


async def test_creates_everything_then_is_idempotent(nats_server: EmbeddedNats) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    try:
        first = await topology.ensure_topology(js, 2 << 30)
        assert set(first.values()) == {"created"}
        names = {s.config.name for s in await js.streams_info()}
        assert {spec.config.name for spec in topology.STREAMS} <= names
        assert {topology.kv_stream(b.bucket) for b in topology.BUCKETS} <= names
        for spec in topology.CONSUMERS:
            info = await js.consumer_info(spec.stream, spec.config.durable_name or "")
            assert info.config.max_ack_pending == spec.config.max_ack_pending
        kv = await js.key_value(topology.BUCKET_STATE)
        assert (await kv.status()).history == 10
        second = await topology.ensure_topology(js, 2 << 30)
        assert set(second.values()) == {"ok"}
        events = await js.stream_info(topology.STREAM_EVENTS)
        assert events.config.retention == RetentionPolicy.LIMITS  # not a work queue
    finally:
        await nc.close()


async def test_changed_config_is_updated(nats_server: EmbeddedNats) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    try:
        await topology.ensure_topology(js, 2 << 30)
        await js.update_stream(topology.STREAMS[2].config.evolve(max_age=60.0, max_bytes=1 << 20))
        report = await topology.ensure_topology(js, 2 << 30)
        assert report[topology.STREAM_TELEMETRY] == "updated"
        info = await js.stream_info(topology.STREAM_TELEMETRY)
        assert info.config.max_age == pytest.approx(2 * 3600)
    finally:
        await nc.close()


async def test_unupdatable_change_is_reported_clearly(nats_server: EmbeddedNats) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    try:
        # An operator created the stream as a work queue by hand; retention cannot be changed in place.
        await js.add_stream(topology.STREAMS[3].config.evolve(retention=RetentionPolicy.WORK_QUEUE, max_bytes=-1))
        with pytest.raises(topology.TopologyError, match="CONSTELLATION_COMMANDS"):
            await topology.ensure_topology(js, 2 << 30)
    finally:
        await nc.close()


@pytest.mark.parametrize("bad", ["", "a.b", "*", ">", "a b", "x" * 129, "ü"])
def test_subject_tokens_are_validated(bad: str) -> None:
    with pytest.raises(topology.InvalidToken):
        topology.telemetry_subject("org", bad)


def test_subject_builders() -> None:
    assert topology.telemetry_subject("o1", "e1") == "constellation.telemetry.o1.e1"
    assert topology.detection_subject("o1", "e1") == "constellation.events.isr.o1.e1"
    assert topology.command_ack_subject("o1", "e1") == "constellation.commands.o1.e1.ack"
    assert topology.entity_lifecycle_subject("o1", "created") == "constellation.entities.o1.created"
    assert topology.video_subject("e1") == "constellation.video.e1"
    assert topology.dlq_subject("CONSTELLATION_TELEMETRY") == "constellation.dlq.CONSTELLATION_TELEMETRY"
