"""StateKeeper: values stored by an older version are brought to the KV spec at start-up, losing nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from app.runtime import Runtime
from core.contracts.state import violations
from fabric.state_store import StateStore
from tests.helpers import eventually, seed, state
from workers.state_keeper import StateKeeper

OLD = "2026-01-01T00:00:00.000Z"


def _old_value(entity_id: str, org_id: str) -> bytes:
    """What a vehicle's value looked like before: no summary, no objects, older words."""
    return msgspec.json.encode(
        {
            "entity_id": entity_id,
            "org_id": org_id,
            "device_id": "",
            "entity_type": "aircraft_multirotor",
            "status": "inactive",
            "is_live": False,
            "updated_at": OLD,
            "mission": {},
            "detections": {},
            "analytics": {},
            "c4isr": {
                "threat_intelligence": {
                    "threat_summary": {"alert_level": "ELEVATED", "threat_distribution": {"MEDIUM_THREAT": 1}},
                    "threat_alerts": [{"track_id": "t1", "alert_type": "MEDIUM_THREAT", "reason": "bag"}],
                }
            },
            "position": {"global": {"latitude": 37.0, "longitude": -122.0}},
        }
    )


async def test_startup_conforms_every_value_with_cas_and_loses_no_writers_scope(runtime: Runtime) -> None:
    ids = await seed(runtime, org_id="orga", entities=4, prefix="a")
    for entity_id in ids:
        await eventually(lambda e=entity_id: state(runtime, e), what=f"{entity_id} created")
        await runtime.kv_state.put(entity_id, _old_value(entity_id, "orga"))
    await runtime.kv_state.delete(ids[3])  # a registered entity without a value gets one ...
    # ... once it is not just being created (its ``created`` event writes the first value): registered long ago.
    await runtime.db.execute("UPDATE entities SET created_at = ? WHERE entity_id = ?", (OLD, ids[3]))
    keeper = StateKeeper(runtime.worker_context, runtime.services.state_cache)
    writer = StateStore(runtime.kv_state, "telemetry")
    stop = asyncio.Event()
    written: dict[str, int] = {}

    async def foreign() -> None:
        # Another writer's scope on the same keys, as fast as CAS allows, while the keeper works.
        n = 0
        while not stop.is_set():
            n += 1
            for entity_id in ids[:3]:

                def mutate(doc: dict[str, Any], n: int = n) -> bool:
                    doc["power"] = {"battery_remaining": float(n % 100), "seq": n}
                    return True

                await writer.merge(entity_id, mutate)
                written[entity_id] = n
            await asyncio.sleep(0)

    task = asyncio.create_task(foreign())
    await eventually(lambda: len(written) == 3, what="the foreign writer going")
    await keeper.startup()
    stop.set()
    await task
    # The runtime's own keeper runs too and may have conformed a value first: count both.
    own = next(w for w in runtime.workers.workers if isinstance(w, StateKeeper))
    conformed, restored = keeper.conformed + own.conformed, keeper.restored + own.restored
    assert conformed >= 3 and restored == 1, (conformed, restored)
    for entity_id in ids:
        doc = await state(runtime, entity_id)
        assert doc is not None and violations(entity_id, doc) == [], (entity_id, doc and violations(entity_id, doc))
        assert doc["status"] == "offline"
    for entity_id in ids[:3]:
        doc = await state(runtime, entity_id)
        assert doc is not None
        assert doc["power"]["seq"] == written[entity_id]  # the foreign writer's last write survived
        assert doc["position"] == {"global": {"latitude": 37.0, "longitude": -122.0}}  # and the old scopes
        intel = doc["c4isr"]["threat_intelligence"]
        assert intel["threat_alerts"][0]["alert_type"] == "MODERATE_THREAT"
        assert intel["threat_summary"]["threat_distribution"] == {
            "LOW_THREAT": 0,
            "MODERATE_THREAT": 1,
            "HIGH_THREAT": 0,
        }
    # A second pass finds nothing to do.
    again = StateKeeper(runtime.worker_context, runtime.services.state_cache)
    await again.startup()
    assert again.conformed == 0 and again.restored == 0
