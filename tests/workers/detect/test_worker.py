"""The detection worker end to end: real NATS, the real server runtime, the shipped model.

The worker watches the synthetic camera (a weapon-like object walks through from
second 4), publishes events and state, and stops; the server's workers turn that into
KV state, threat alerts, detection history and live video.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import msgspec
import pytest

from app.runtime import Runtime
from core import topology
from db import alerts as alerts_db
from fabric.state_store import StateStore
from services.schemas import EntityCreate
from tests.helpers import eventually, seed, state, stream_messages
from workers.detect.config import DetectSettings
from workers.detect.worker import DetectionWorker

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

CAMERA = "cam-1"


def detect_settings(url: str, **overrides: Any) -> DetectSettings:
    """Settings for a worker on the test server (synthetic source, fast state writes)."""
    base: dict[str, Any] = {
        "org_id": "org1",
        "entity_id": CAMERA,
        "nats_url": url,
        "source": "synthetic:7",
        "kv_hz": 4.0,
        "lost_after": 1.5,
        "threads": 1,
    }
    return DetectSettings(**(base | overrides))


async def events_for(runtime: Runtime) -> list[tuple[str, dict[str, Any]]]:
    """(Nats-Msg-Id, body) of every stored event for the camera."""
    out = []
    for msg in await stream_messages(runtime.js, topology.STREAM_EVENTS):
        if msg.subject == topology.detection_subject("org1", CAMERA):
            headers = msg.headers or {}
            out.append((headers.get("Nats-Msg-Id", ""), msgspec.json.decode(msg.data or b"{}")))
    return out


async def test_detection_worker_feeds_the_whole_picture(runtime: Runtime) -> None:
    await seed(runtime, entities=0)
    await runtime.services.registry.create_entity(
        "org1", EntityCreate(entity_id=CAMERA, name="Gate", entity_type="isr_sensor")
    )
    worker = DetectionWorker(detect_settings(runtime.settings.nats_url))
    stopping = asyncio.Event()
    task = asyncio.create_task(worker.run(stopping))
    foreign = StateStore(runtime.kv_state, "telemetry")
    written = [0]

    async def foreign_writer() -> None:
        # Another writer's scope on the same key, written as fast as CAS allows.
        while not stopping.is_set():
            written[0] += 1

            def mutate(doc: dict[str, Any], n: int = written[0]) -> bool:
                doc["power"] = {"battery_remaining": float(n % 100), "seq": n}
                return True

            await foreign.merge(CAMERA, mutate)
            await asyncio.sleep(0.01)  # pacing the competing writer (~100 writes/s), not a wait

    writer = asyncio.create_task(foreign_writer())
    try:
        # Boot event first, with its exact identity and a device fingerprint.
        boot = await eventually(
            lambda: _first(events_for(runtime), "bootsequence"), timeout=15, what="bootsequence event"
        )
        msg_id, body = boot
        assert msg_id == f"{CAMERA}:boot:{worker.boot_id}"
        assert body["org_id"] == body["organization_id"] == "org1"
        assert body["entity_id"] == CAMERA and body["device_id"] == worker.ident_device

        # Objects tracked into KV, next to the foreign scope.
        doc = await eventually(lambda: _with_objects(state(runtime, CAMERA)), timeout=20, what="objects in KV")
        for scope in ("detections", "analytics", "c4isr", "mission"):
            assert scope in doc, scope
        assert doc["is_live"] is True and doc["mission"]["status"] == "operational"
        obj = next(iter(doc["detections"]["objects"].values()))
        assert {
            "track_id",
            "label",
            "confidence",
            "current_bbox",
            "threat_level",
            "first_seen",
            "last_seen",
        } <= obj.keys()

        # The weapon walks in: HIGH threat in the KV state and a threat alert with a reason.
        doc = await eventually(lambda: _alert_level(state(runtime, CAMERA), "HIGH"), timeout=30, what="HIGH threat")
        alert = doc["c4isr"]["threat_intelligence"]["threat_alerts"][0]
        assert alert["alert_type"] == "HIGH_THREAT" and "weapon" in alert["reason"]
        rows = await eventually(lambda: _open_weapon_alerts(runtime), timeout=10, what="weapon threat alert row")
        assert rows

        # Live video reached the server's VideoWorker.
        assert runtime.services.video.latest(CAMERA) is not None

        # ... and walks out: the object leaves KV (no ghost) and the alert clears.
        await eventually(
            lambda: _no_weapon(state(runtime, CAMERA)), timeout=40, interval=0.2, what="weapon gone from KV"
        )
        await eventually(lambda: _no_open_weapon_alert(runtime), timeout=10, what="weapon alert cleared")
    finally:
        stopping.set()
        assert await asyncio.wait_for(task, 15) == 0
        await asyncio.wait_for(writer, 5)

    events = await events_for(runtime)
    ids = [m for m, _ in events]
    assert len(ids) == len(set(ids)), "duplicate Nats-Msg-Id in the stream"
    assert all(re.fullmatch(rf"{CAMERA}:(boot|shutdown):\w+|{CAMERA}:\w+:\d+", m) for m in ids), ids[:5]
    types = [b["event_type"] for _, b in events]
    assert types[0] == "bootsequence" and types[-1] == "shutdown"
    detections = [b for _, b in events if b["event_type"] == "detection"]
    reasons = {d["detection"]["metadata"]["event_reason"] for d in detections}
    assert "new" in reasons and not reasons & {"lost", "reappeared"}, reasons
    # Leaving and coming back have their own event types, so the PRD's Pattern 1 consumer
    # (``event_type == "detection"`` and HIGH_THREAT → alert) never alerts on a departure.
    assert {b["event_type"] for _, b in events} >= {"detection", "lost"}
    weapons = {b["detection"]["track_id"] for _, b in events if b.get("detection", {}).get("label") == "weapon"}
    assert weapons, "the weapon was never detected"
    for track in weapons:
        kinds = [b["event_type"] for _, b in events if b.get("detection", {}).get("track_id") == track]
        assert "lost" in kinds, (track, kinds)
        gone = False
        for kind in kinds:  # after "lost", no "detection" for the track unless it "reappeared" first
            assert not (gone and kind == "detection"), (track, kinds)
            gone = kind == "lost" or (gone and kind != "reappeared")
    assert all(w in {b["detection"]["track_id"] for _, b in events if b["event_type"] == "lost"} for w in weapons)
    final = await state(runtime, CAMERA)
    assert final is not None
    assert final["is_live"] is False and final["mission"]["status"] == "stopped"
    assert final["detections"]["objects"] == {}
    # The foreign writer's last write survived every detection-state write.
    assert final["power"]["seq"] == written[0]
    assert worker.pipeline()["kv_conflicts"] >= 0 and worker.pipeline()["events_dropped"] == 0


async def _first(events: Any, event_type: str) -> tuple[str, dict[str, Any]] | None:
    return next((e for e in await events if e[1].get("event_type") == event_type), None)


async def _with_objects(doc: Any) -> dict[str, Any] | None:
    value = await doc
    return value if value and (value.get("detections") or {}).get("objects") else None


async def _alert_level(doc: Any, level: str) -> dict[str, Any] | None:
    value = await doc
    if not value:
        return None
    intel = (value.get("c4isr") or {}).get("threat_intelligence") or {}
    return value if (intel.get("threat_summary") or {}).get("alert_level") == level else None


async def _no_weapon(doc: Any) -> bool:
    value = await doc
    objects = ((value or {}).get("detections") or {}).get("objects") or {}
    return bool(value) and not any(o["label"] == "weapon" for o in objects.values())


async def _open_threat_alerts(runtime: Runtime) -> list[Any]:
    return await alerts_db.list_alerts(runtime.db, status="active", kind="threat", entity_id=CAMERA)


async def _open_weapon_alerts(runtime: Runtime) -> list[Any]:
    return [r for r in await _open_threat_alerts(runtime) if "weapon" in r.reason]


async def _no_open_weapon_alert(runtime: Runtime) -> bool:
    return not [r for r in await _open_threat_alerts(runtime) if "weapon" in r.title]
