"""The downstream PRD's limits and shared consumer: KV TTL, 1 MiB events, ``detection-processor``."""

from __future__ import annotations

import json
from typing import Any

from nats.js.api import AckPolicy, RetentionPolicy

from app.runtime import Runtime
from core import topology
from core.contracts.state import violations
from db import detections as detections_db
from tests.app.test_nats_readers import _detection
from tests.helpers import dlq, eventually, seed, state, telemetry
from workers.base import DLQ_REASON

STATE_STREAM = topology.kv_stream(topology.BUCKET_STATE)


async def test_detection_processor_is_provisioned_and_can_be_switched_off(make_runtime: Any) -> None:
    rt: Runtime = await make_runtime()
    info = await rt.js.consumer_info(topology.STREAM_EVENTS, "detection-processor")
    assert info.config.durable_name == "detection-processor"
    assert info.config.filter_subject == "constellation.events.isr.>"
    assert info.config.ack_policy == AckPolicy.EXPLICIT
    # The stream stays limits-retention: an idle consumer holds nothing back.
    assert (await rt.js.stream_info(topology.STREAM_EVENTS)).config.retention == RetentionPolicy.LIMITS
    await make_runtime(detection_processor=False)  # same NATS server, started again with the setting off
    names = [c.name for c in await rt.js.consumers_info(topology.STREAM_EVENTS)]
    assert "detection-processor" not in names and "event-processor" in names


async def test_kv_ttl_is_configurable_and_applied_to_an_existing_bucket(make_runtime: Any) -> None:
    rt: Runtime = await make_runtime()
    config = (await rt.js.stream_info(STATE_STREAM)).config
    assert config.max_age == 24 * 3600  # the PRD's 24 h
    await make_runtime(state_ttl_hours=2.0)  # the next start with another setting updates the bucket
    assert (await rt.js.stream_info(STATE_STREAM)).config.max_age == 2 * 3600


async def test_an_expired_value_shows_from_the_registry_as_offline_and_returns(make_runtime: Any) -> None:
    ttl = 3.0  # seconds
    rt: Runtime = await make_runtime(state_ttl_hours=ttl / 3600, offline_after=1.0)
    (e0,) = await seed(rt, org_id="orga", entities=1, prefix="a")
    await rt.js.publish(topology.telemetry_subject("orga", e0), telemetry(battery=55.0))
    await eventually(lambda: _has(rt, e0, lambda d: "power" in d and d["is_live"]), what="live with telemetry")

    # No message for longer than the TTL: the value with the telemetry expires and the keeper
    # writes the registry's view back (offline, not live, empty scopes).
    restored = await eventually(
        lambda: _has(rt, e0, lambda d: "power" not in d), timeout=15, interval=0.2, what="the expired value restored"
    )
    assert restored["status"] == "offline" and restored["is_live"] is False
    assert restored["org_id"] == "orga" and restored["name"] == "a 0" and violations(e0, restored) == []
    view = await eventually(lambda: _view(rt, e0, lambda v: "power" not in v), what="the console's view")
    assert view["status"] == "offline"

    # ... and its next message brings it back.
    await rt.js.publish(topology.telemetry_subject("orga", e0), telemetry(battery=44.0))
    back = await eventually(
        lambda: _has(rt, e0, lambda d: (d.get("power") or {}).get("battery_remaining") == 44.0), what="back"
    )
    assert back["status"] == "active" and back["is_live"] is True and violations(e0, back) == []


async def test_events_up_to_1_mib_are_accepted_larger_ones_dead_lettered(runtime: Runtime) -> None:
    (e0,) = await seed(runtime, org_id="orga", entities=1, prefix="a")
    mib = 1024 * 1024
    fits = _detection("orga", e0, "t-fits", size=mib)
    too_big = _detection("orga", e0, "t-big", size=mib + 1)
    assert len(fits) == mib and len(too_big) == mib + 1
    await runtime.js.publish(topology.detection_subject("orga", e0), fits)
    await runtime.js.publish(topology.detection_subject("orga", e0), too_big)

    async def stored() -> list[str]:
        return [r.track_id for r in await detections_db.list_detections(runtime.db, e0)]

    assert await eventually(lambda: _contains(stored(), "t-fits"), what="the 1 MiB event stored")
    letters = await eventually(lambda: dlq(runtime.js), what="the larger event dead-lettered")
    reasons = [(m.headers or {}).get(DLQ_REASON, "") for m in letters]
    assert any(f"payload of {mib + 1} bytes exceeds {mib}" in r for r in reasons), reasons
    assert "t-big" not in await stored()


async def _contains(items: Any, item: str) -> bool:
    return item in await items


async def _has(rt: Runtime, entity_id: str, check: Any) -> dict[str, Any] | None:
    doc = await state(rt, entity_id)
    return doc if doc and check(doc) else None


async def _view(rt: Runtime, entity_id: str, check: Any) -> dict[str, Any] | None:
    view = rt.services.state_cache.get(entity_id)
    return json.loads(json.dumps(view)) if view and check(view) else None
