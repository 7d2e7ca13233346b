"""The downstream PRD's Python examples with nats-py against ``overwatch serve --demo``.

Each function below is the PRD's code as it runs against Overwatch (docs/integrators.md):
the same calls, with the reader's credentials and inbox prefix in ``connect`` and the
nats-py spellings the PRD gets wrong (``kv.watch`` takes a key pattern, not a list, and
yields ``None`` once the current values are delivered). Loops the PRD runs forever stop
after a few messages here. An organisation reader runs the documented equivalents: core
subscriptions and direct gets, no JetStream consumers (docs/integrators.md).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import nats
import pytest
from nats.js.api import ConsumerConfig
from nats.js.kv import KeyValue

from tests.contract.conftest import CAMERA, DEMO_ORG, OTHER_ENTITY, OTHER_ORG, Credential, Demo
from tests.helpers import eventually, synced

pytestmark = pytest.mark.timeout(150)  # the first test also starts the demo


# ---------------------------------------------------------------- the PRD's code, as it runs


async def prd_python_section(url: str, cred: Credential, entity_id: str) -> dict[str, Any]:
    """ "Example Queries → Python": KV get, watch, subscribe to detection events."""
    seen: dict[str, Any] = {"updates": [], "events": []}
    nc = await nats.connect(url, **cred.connect_options())
    js = nc.jetstream()

    # Get KV store
    kv = await js.key_value("CONSTELLATION_GLOBAL_STATE")

    # Get entity state
    entry = await kv.get(entity_id)
    state = json.loads(entry.value.decode())
    seen["state"] = state

    # Watch for updates
    watcher = await kv.watch(entity_id)
    async for entry in watcher:
        if entry is None:  # nats-py: the current values have been delivered
            continue
        state = json.loads(entry.value.decode())
        seen["updates"].append(state)
        if len(seen["updates"]) >= 2:
            break
    await watcher.stop()

    # Subscribe to events
    async def message_handler(msg: Any) -> None:
        event = json.loads(msg.data.decode())
        seen["events"].append(event)

    await nc.subscribe("constellation.events.isr.>", cb=message_handler)
    await eventually(lambda: len(seen["events"]) >= 2, timeout=15, what="two events")  # the PRD loops forever
    await nc.close()
    return seen


async def prd_event_stream_consumer(url: str, cred: Credential, rounds: int = 3) -> list[dict[str, Any]]:
    """ "Event Stream Consumer": the durable ``detection-processor``, fetch, process, ack."""
    processed: list[dict[str, Any]] = []

    async def process_detection(event: dict[str, Any]) -> None:
        detection = event["detection"]
        processed.append(
            {
                "entity_id": event["entity_id"],
                "track_id": detection["track_id"],
                "label": detection["label"],
                "confidence": detection["confidence"],
                "threat_level": detection["metadata"].get("threat_level"),
                "timestamp": detection["timestamp"],
            }
        )

    nc = await nats.connect(url, **cred.connect_options())
    js = nc.jetstream()

    # Durable consumer for reliable processing
    psub = await js.pull_subscribe("constellation.events.isr.>", "detection-processor")

    for _ in range(rounds):  # the PRD: while True
        msgs = await psub.fetch(batch=10, timeout=1.0)

        for msg in msgs:
            event = json.loads(msg.data.decode())

            if event["event_type"] == "detection":
                await process_detection(event)

            await msg.ack()
    await nc.close()
    return processed


async def prd_list_entities(url: str, cred: Credential) -> list[dict[str, Any]]:
    """ "Backend API Integration": ``get_entity_state`` for each key and ``list_entities``."""
    nc = await nats.connect(url, **cred.connect_options())
    js = nc.jetstream()
    kv = await js.key_value("CONSTELLATION_GLOBAL_STATE")

    keys = await kv.keys()
    entities = []

    for key in keys:
        entry = await kv.get(key)
        state = json.loads(entry.value.decode())
        if state["is_live"]:
            entities.append(
                {
                    "entity_id": state["entity_id"],
                    "status": state["status"],
                    "active_objects": state["analytics"]["summary"]["active_objects_count"],
                }
            )
    await nc.close()
    return entities


# ---------------------------------------------------------------- an organisation reader's equivalents


def state_bucket(js: Any) -> KeyValue:
    """The state bucket bound without ``STREAM.INFO`` (an organisation reader may not list every key)."""
    return KeyValue(
        name="CONSTELLATION_GLOBAL_STATE",
        stream="KV_CONSTELLATION_GLOBAL_STATE",
        pre="$KV.CONSTELLATION_GLOBAL_STATE.",
        js=js,
        direct=True,
    )


async def watch_key(nc: Any, entity_id: str) -> Any:
    """``kv.watch(entity_id)`` for an organisation reader: a core subscription to the key's subject.

    Every put of the key is a message on ``$KV.CONSTELLATION_GLOBAL_STATE.<key>``; the
    current value comes from ``kv.get`` (a watcher's consumer is refused: see docs/security.md).
    """
    return await nc.subscribe(f"$KV.CONSTELLATION_GLOBAL_STATE.{entity_id}")


async def org_python_section(url: str, cred: Credential, org: str, entity_id: str) -> dict[str, Any]:
    """The Python section for an organisation reader."""
    seen: dict[str, Any] = {"updates": [], "events": []}
    nc = await nats.connect(url, **cred.connect_options())
    js = nc.jetstream()
    kv = state_bucket(js)
    seen["state"] = json.loads((await kv.get(entity_id)).value.decode())  # type: ignore[union-attr]
    watcher = await watch_key(nc, entity_id)
    while len(seen["updates"]) < 2:
        msg = await watcher.next_msg(timeout=10)
        seen["updates"].append(json.loads(msg.data.decode()))
    await watcher.unsubscribe()

    async def message_handler(msg: Any) -> None:
        seen["events"].append(json.loads(msg.data.decode()))

    await nc.subscribe(f"constellation.events.isr.{org}.>", cb=message_handler)
    await eventually(lambda: len(seen["events"]) >= 2, timeout=15, what="two events")  # the PRD loops forever
    await nc.close()
    return seen


async def org_event_stream_consumer(url: str, cred: Credential, org: str, count: int = 3) -> list[dict[str, Any]]:
    """The Event Stream Consumer for an organisation reader: a core subscription (live, no acks)."""
    events: list[dict[str, Any]] = []
    nc = await nats.connect(url, **cred.connect_options())
    sub = await nc.subscribe(f"constellation.events.isr.{org}.>")
    while len(events) < count:
        msg = await sub.next_msg(timeout=10)
        events.append(json.loads(msg.data.decode()))
    await nc.close()
    return events


async def org_detection_history(demo: Demo, cred: Credential, entity_id: str) -> list[dict[str, Any]]:
    """Pattern 4 (historical replay) for an organisation reader: the REST detection history."""
    async with httpx.AsyncClient(base_url=demo.proc.url, headers={"Authorization": f"Bearer {cred.api_key}"}) as http:
        r = await http.get(f"/api/v1/organizations/{cred.org}/entities/{entity_id}/detections")
    r.raise_for_status()
    body = r.json()
    items: list[dict[str, Any]] = body["items"] if isinstance(body, dict) else body
    return items


async def org_list_entities(demo: Demo, cred: Credential) -> list[dict[str, Any]]:
    """``list_entities`` for an organisation reader: its entities from the REST registry, states from KV."""
    async with httpx.AsyncClient(base_url=demo.proc.url, headers={"Authorization": f"Bearer {cred.api_key}"}) as http:
        page = (await http.get(f"/api/v1/organizations/{cred.org}/entities", params={"limit": 500})).json()
    nc = await nats.connect(demo.nats_url, **cred.connect_options())
    kv = state_bucket(nc.jetstream())
    entities = []
    for item in page["items"]:
        state = json.loads((await kv.get(item["entity_id"])).value.decode())  # type: ignore[union-attr]
        if state["is_live"]:
            entities.append(
                {
                    "entity_id": state["entity_id"],
                    "status": state["status"],
                    "active_objects": state["analytics"]["summary"]["active_objects_count"],
                }
            )
    await nc.close()
    return entities


# ---------------------------------------------------------------- the tests


async def test_fabric_reader_runs_the_prd_python(demo: Demo) -> None:
    seen = await prd_python_section(demo.nats_url, demo.fabric, CAMERA)
    assert seen["state"]["entity_id"] == CAMERA and seen["state"]["is_live"] is True
    assert len(seen["updates"]) == 2 and all(u["entity_id"] == CAMERA for u in seen["updates"])
    assert len(seen["events"]) >= 2, "no live detection events"

    processed = await prd_event_stream_consumer(demo.nats_url, demo.fabric)
    assert processed, "detection-processor delivered no detection"
    assert {p["threat_level"] for p in processed} <= {"LOW_THREAT", "MODERATE_THREAT", "HIGH_THREAT"}

    live = await prd_list_entities(demo.nats_url, demo.fabric)
    ids = {e["entity_id"] for e in live}
    assert CAMERA in ids and len(ids) >= 4, live  # the camera and the vehicles
    assert {e["status"] for e in live} <= {"active", "offline", "error"}


async def test_organisation_reader_runs_the_documented_equivalents(demo: Demo) -> None:
    seen = await org_python_section(demo.nats_url, demo.org, DEMO_ORG, CAMERA)
    assert seen["state"]["org_id"] == DEMO_ORG and len(seen["updates"]) == 2
    assert len(seen["events"]) >= 2 and {e["organization_id"] for e in seen["events"]} == {DEMO_ORG}
    events = await org_event_stream_consumer(demo.nats_url, demo.org, DEMO_ORG)
    assert {e["organization_id"] for e in events} == {DEMO_ORG}
    history = await org_detection_history(demo, demo.org, CAMERA)
    assert history, "no detection history over REST"
    live = await org_list_entities(demo, demo.org)
    assert CAMERA in {e["entity_id"] for e in live}


async def test_organisation_reader_never_reaches_another_organisation(demo: Demo) -> None:
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc).lower())

    reader = await nats.connect(demo.nats_url, error_cb=on_error, **demo.org.connect_options())
    device = await nats.connect(demo.nats_url, **demo.device.connect_options())
    try:
        js = reader.jetstream(timeout=1.0)
        kv = state_bucket(js)
        received: list[str] = []

        async def record(msg: Any) -> None:
            received.append(msg.subject)

        # Everything it may subscribe to, plus the other organisation's subjects (refused).
        subs = []
        for subject in ("constellation.events.*.demo.*", "constellation.telemetry.demo.*"):
            subs.append(await reader.subscribe(subject, cb=record))
        for subject in (f"constellation.telemetry.{OTHER_ORG}.*", "constellation.events.isr.>", ">"):
            subs.append(await reader.subscribe(subject, cb=record))
        await synced(reader)
        # The other organisation's device publishes telemetry and a detection while the reader listens.
        djs = device.jetstream()
        await djs.publish(f"constellation.telemetry.{OTHER_ORG}.{OTHER_ENTITY}", b'{"power": {"voltage": 12.0}}')
        event = {
            "timestamp": "2026-01-01T00:00:00Z",
            "event_type": "detection",
            "entity_id": OTHER_ENTITY,
            "device_id": "d",
            "organization_id": OTHER_ORG,
            "detection": {
                "track_id": "secret-track",
                "model_type": "m",
                "label": "weapon",
                "confidence": 0.9,
                "bbox": {"x_min": 0.1, "y_min": 0.1, "x_max": 0.2, "y_max": 0.2},
                "timestamp": "2026-01-01T00:00:00Z",
                "metadata": {"threat_level": "HIGH_THREAT"},
            },
        }
        await djs.publish(f"constellation.events.isr.{OTHER_ORG}.{OTHER_ENTITY}", json.dumps(event).encode())
        with pytest.raises(Exception):  # noqa: B017 - refused: the request goes unanswered
            await kv.get(OTHER_ENTITY)
        with pytest.raises(Exception):  # noqa: B017
            await js.add_consumer(
                "CONSTELLATION_EVENTS",
                ConsumerConfig(name="peek", filter_subject=f"constellation.events.isr.{OTHER_ORG}.>"),
            )
        with pytest.raises(Exception):  # noqa: B017 - every organisation's detections: no pulls, no info
            await js.pull_subscribe("constellation.events.isr.>", "detection-processor")
        with pytest.raises(Exception):  # noqa: B017 - no consumers at all, even inside its organisation
            await js.add_consumer(
                "CONSTELLATION_EVENTS",
                ConsumerConfig(name="own", filter_subject=f"constellation.events.isr.{DEMO_ORG}.>"),
            )
        # The server routed the other organisation's two messages before it acknowledged them to the device;
        # whatever it routed to the reader precedes the answer to the reader's PING, and the callbacks have
        # run once no subscription holds a pending message.
        await reader.flush()
        await eventually(lambda: all(sub.pending_msgs == 0 for sub in subs), what="the reader's callbacks run")
        assert not [s for s in received if OTHER_ORG in s], received
        refusals = (
            f'subscription to "constellation.telemetry.{OTHER_ORG}.*"',
            'subscription to "constellation.events.isr.>"',
            'subscription to ">"',
            f"$kv.constellation_global_state.{OTHER_ENTITY}",
            f"constellation.events.isr.{OTHER_ORG}.>",
            "$js.api.consumer.info.constellation_events.detection-processor",
            f"$js.api.consumer.create.constellation_events.own.constellation.events.isr.{DEMO_ORG}.>",
        )

        def reported(refused: str) -> bool:
            return any("permissions violation" in e and refused.lower() in e for e in errors)

        await eventually(lambda: all(reported(r) for r in refusals), what="every refusal reported")
    finally:
        await reader.close()
        await device.close()
