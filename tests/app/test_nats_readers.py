"""NATS reader credentials (integrators) against the real embedded nats-server.

A *fabric* reader reads every organisation's state, events, entities and telemetry and
uses JetStream consumers (``detection-processor`` included); an *organisation* reader
the same confined to its organisation. Neither can publish data, write or delete KV,
purge, create or delete streams, steer the server's own consumers, or — for an
organisation reader — see another organisation. Every refusal here is the server's.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig

from app.main import create_app
from app.runtime import Runtime
from core import topology
from core.errors import Invalid
from db import audit as audit_db
from services.auth.apikeys import NewKey
from services.nats_auth import state_bucket
from services.schemas import EntityCreate
from tests.conftest import OVERWATCH, KeyConnection, api_client, connect_with_key
from tests.helpers import dlq, eventually, seed, state, stream_messages, synced, telemetry
from workers.base import DLQ_REASON, DLQ_SUBJECT, REPLY_INJECTION

REVOCATION_BUDGET = 2.0
STATE = topology.BUCKET_STATE
REFUSED = "permissions violation"


class Reader(KeyConnection):
    """A reader's NATS connection; ``errors`` collects the server's asynchronous refusals."""

    def __init__(self, nc: NATS, errors: list[str], closed: asyncio.Event) -> None:
        super().__init__(nc, errors, closed)
        self.js = nc.jetstream(timeout=1.0)
        self.quick = nc.jetstream(timeout=0.5)  # for requests the server drops: they only time out

    async def refused(self, subject: str, attempt: Any, fails: bool = True) -> None:
        """``attempt`` fails (a core publish cannot tell) and the server reports a violation naming ``subject``."""
        seen = len(self.errors)
        if fails:
            with pytest.raises(Exception):  # noqa: B017 - a refused request times out or errors, by client
                await attempt
        else:
            await attempt
            await self.nc.flush()
        await eventually(
            lambda: any(REFUSED in e.lower() and subject.lower() in e.lower() for e in self.errors[seen:]),
            timeout=3,
            what=f"the server refusing {subject}",
        )


async def _reader(rt: Runtime, org: str | None, name: str = "reader") -> tuple[Reader, NewKey]:
    key = await rt.services.apikeys.create("tests", name, ["read"], org, nats=True, nats_kind="reader")
    manager = rt.services.nats_auth
    assert manager is not None and rt.nats_server is not None and key.nats_seed
    await manager.apply()
    reader: Reader = await connect_with_key(rt, key, Reader)
    return reader, key


async def _world(rt: Runtime) -> tuple[str, str]:
    """Two organisations with an entity each, with state and a detection event."""
    (a1,) = await seed(rt, org_id="orga", entities=1, prefix="a")
    (b1,) = await seed(rt, org_id="orgb", entities=1, prefix="b")
    for org, entity in (("orga", a1), ("orgb", b1)):
        await rt.js.publish(topology.telemetry_subject(org, entity), telemetry())
        await rt.js.publish(topology.detection_subject(org, entity), _detection(org, entity, "t-" + entity))
    await eventually(lambda: state(rt, a1), what="a1 state")
    await eventually(lambda: state(rt, b1), what="b1 state")
    return a1, b1


def _detection(org: str, entity: str, track: str, threat: str = "HIGH_THREAT", size: int = 0) -> bytes:
    body: dict[str, Any] = {
        "timestamp": datetime.now(UTC).isoformat(),
        "event_type": "detection",
        "entity_id": entity,
        "device_id": "d",
        "organization_id": org,
        "detection": {
            "track_id": track,
            "model_type": "test",
            "label": "weapon",
            "confidence": 0.9,
            "bbox": {"x_min": 0.1, "y_min": 0.1, "x_max": 0.2, "y_max": 0.2},
            "timestamp": datetime.now(UTC).isoformat(),
            "metadata": {"threat_level": threat, "suspicious_indicators": []},
        },
    }
    if size:  # padded to exactly ``size`` bytes
        body["padding"] = ""
        body["padding"] = "x" * (size - len(msgspec.json.encode(body)))
    return msgspec.json.encode(body)


async def test_fabric_reader_reads_everything_and_publishes_nothing(make_runtime: Any) -> None:
    rt: Runtime = await make_runtime(nats_url="", nats_port=-1)
    a1, b1 = await _world(rt)
    reader, _key = await _reader(rt, None)
    js, nc = reader.js, reader.nc
    try:
        # KV as the PRD does it: bind (STREAM.INFO), get, keys, watch, history.
        kv = await js.key_value(STATE)
        for entity in (a1, b1):
            assert json.loads((await kv.get(entity)).value or b"{}")["entity_id"] == entity
        assert {a1, b1} <= set(await kv.keys())
        watcher = await kv.watch(a1)
        first = await asyncio.wait_for(watcher.updates(timeout=2), 3)
        assert first is not None and first.key == a1
        await watcher.stop()
        assert len(await kv.history(a1)) >= 1

        # Live events (core subscription) and the shared durable detection-processor.
        sub = await nc.subscribe("constellation.events.isr.>")
        await synced(nc)
        await rt.js.publish(topology.detection_subject("orgb", b1), _detection("orgb", b1, "t-live"))
        try:
            live = await sub.next_msg(timeout=10)
        except nats.errors.TimeoutError:
            raise AssertionError(f"no live event; server errors {reader.errors}, connected {nc.is_connected}") from None
        assert json.loads(live.data)["detection"]["track_id"] == "t-live"
        psub = await js.pull_subscribe("constellation.events.isr.>", "detection-processor")
        msgs = await psub.fetch(batch=10, timeout=2)
        assert {json.loads(m.data)["entity_id"] for m in msgs} >= {a1, b1}
        for m in msgs:
            await m.ack()
        await nc.flush()

        # Its own consumers: durable and ephemeral pull, one that starts at a time, then deleted.
        own = await js.pull_subscribe("constellation.telemetry.>", "my-telemetry", stream=topology.STREAM_TELEMETRY)
        assert await own.fetch(1, timeout=2)
        await js.delete_consumer(topology.STREAM_TELEMETRY, "my-telemetry")
        since = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=(datetime.now(UTC) - timedelta(hours=1))
        )
        replay = await js.pull_subscribe("constellation.events.>", config=since)
        assert await replay.fetch(1, timeout=2)
        await replay.unsubscribe()

        # Never: data, KV writes, stream administration, the server's consumers, listing consumers.
        await reader.refused(
            topology.telemetry_subject("orga", a1),
            reader.quick.publish(topology.telemetry_subject("orga", a1), telemetry()),
        )
        await reader.refused(
            "constellation.commands.orga.a-0", nc.publish("constellation.commands.orga.a-0", b"{}"), fails=False
        )
        await reader.refused(f"$KV.{STATE}.{a1}", kv.put(a1, b"{}"))
        await reader.refused(f"$KV.{STATE}.{a1}", kv.delete(a1))
        await reader.refused("$JS.API.STREAM.PURGE", reader.quick.purge_stream(topology.STREAM_EVENTS))
        await reader.refused("$JS.API.STREAM.DELETE", reader.quick.delete_stream(topology.STREAM_EVENTS))
        await reader.refused(
            "$JS.API.STREAM.CREATE", reader.quick.add_stream(StreamConfig(name="MINE", subjects=["mine.>"]))
        )
        await reader.refused(
            "$JS.API.STREAM.UPDATE",
            reader.quick.update_stream(
                StreamConfig(name=topology.STREAM_EVENTS, subjects=[topology.SUBJECT_EVENTS_ALL])
            ),
        )
        await reader.refused(
            "$JS.API.CONSUMER.CREATE.CONSTELLATION_EVENTS.event-processor",
            reader.quick.add_consumer(
                topology.STREAM_EVENTS, ConsumerConfig(name="event-processor", max_ack_pending=1)
            ),
        )
        await reader.refused(
            "$JS.API.CONSUMER.DELETE.CONSTELLATION_EVENTS.detection-processor",
            reader.quick.delete_consumer(topology.STREAM_EVENTS, "detection-processor"),
        )
        await reader.refused(
            "$JS.API.CONSUMER.MSG.NEXT.CONSTELLATION_EVENTS.event-processor",
            nc.request("$JS.API.CONSUMER.MSG.NEXT.CONSTELLATION_EVENTS.event-processor", b'{"batch":1}', timeout=0.5),
        )
        # The old create form names the consumer only in its body (it could update event-processor).
        body = {"stream_name": topology.STREAM_EVENTS, "config": {"name": "event-processor", "max_ack_pending": 1}}
        await reader.refused(
            '$JS.API.CONSUMER.CREATE.CONSTELLATION_EVENTS"',
            nc.request(f"$JS.API.CONSUMER.CREATE.{topology.STREAM_EVENTS}", json.dumps(body).encode(), timeout=0.5),
        )
        await reader.refused(
            "$JS.API.CONSUMER.LIST", nc.request(f"$JS.API.CONSUMER.LIST.{topology.STREAM_EVENTS}", b"{}", timeout=1)
        )
    finally:
        await nc.close()
    # Nothing changed: the server's consumer, the shared one, the stream and the values.
    info = await rt.js.consumer_info(topology.STREAM_EVENTS, "event-processor")
    assert info.config.max_ack_pending == 5000
    await rt.js.consumer_info(topology.STREAM_EVENTS, "detection-processor")
    assert (await rt.js.stream_info(topology.STREAM_EVENTS)).state.messages >= 3
    assert (await state(rt, a1) or {}).get("entity_id") == a1
    assert "MINE" not in {s.config.name for s in await rt.js.streams_info()}
    assert (await rt.js.stream_info(topology.STREAM_COMMANDS)).state.messages == 0


async def test_organisation_reader_sees_only_its_organisation(make_runtime: Any) -> None:
    rt: Runtime = await make_runtime(nats_url="", nats_port=-1)
    a1, b1 = await _world(rt)
    reader, _key = await _reader(rt, "orga")
    js, nc = reader.js, reader.nc
    try:
        # Its keys by direct get (the bucket bound without STREAM.INFO), never another organisation's.
        kv = state_bucket(js)
        assert json.loads((await kv.get(a1)).value or b"{}")["org_id"] == "orga"
        await reader.refused(f"$JS.API.DIRECT.GET.KV_{STATE}.$KV.{STATE}.{b1}", kv.get(b1))
        await reader.refused(f"$JS.API.STREAM.INFO.KV_{STATE}", reader.quick.key_value(STATE))

        # Live changes of its own key by core subscription; another organisation's key is refused.
        changes = await nc.subscribe(f"$KV.{STATE}.{a1}")
        foreign = await nc.subscribe(f"$KV.{STATE}.{b1}")
        await synced(nc)
        await eventually(
            lambda: any(f'subscription to "$kv.{STATE}.{b1}"'.lower() in e.lower() for e in reader.errors),
            what="the refused key subscription",
        )
        await rt.js.publish(topology.telemetry_subject("orga", a1), telemetry(battery=21.0))
        await rt.js.publish(topology.telemetry_subject("orgb", b1), telemetry(battery=21.0))
        assert json.loads((await changes.next_msg(timeout=10)).data)["entity_id"] == a1
        await changes.unsubscribe()
        with pytest.raises(nats.errors.TimeoutError):
            await foreign.next_msg(timeout=0.5)

        # Its organisation's live subjects; another organisation's subscription is refused.
        mine = await nc.subscribe("constellation.telemetry.orga.*")
        theirs = await nc.subscribe("constellation.telemetry.orgb.*")
        await synced(nc)  # the server has taken both SUBs (one refused)
        await rt.js.publish(topology.telemetry_subject("orgb", b1), telemetry())
        await rt.js.publish(topology.telemetry_subject("orga", a1), telemetry())
        assert (await mine.next_msg(timeout=10)).subject == topology.telemetry_subject("orga", a1)
        await eventually(
            lambda: any("subscription" in e.lower() and "constellation.telemetry.orgb" in e for e in reader.errors),
            what="the refused subscription",
        )
        with pytest.raises(nats.errors.TimeoutError):
            await theirs.next_msg(timeout=0.5)

        # No consumers at all, not even on its own organisation's subjects (see docs/security.md, NATS).
        await reader.refused(
            "$JS.API.CONSUMER.CREATE.CONSTELLATION_EVENTS.orga-detections",
            reader.quick.add_consumer(
                topology.STREAM_EVENTS,
                ConsumerConfig(
                    name="orga-detections",
                    durable_name="orga-detections",
                    filter_subject="constellation.events.isr.orga.>",
                    deliver_subject=nc.new_inbox(),
                    ack_policy=AckPolicy.EXPLICIT,
                ),
            ),
        )
        await reader.refused(
            "$JS.API.CONSUMER.DURABLE.CREATE.CONSTELLATION_EVENTS.orga-pull",
            reader.quick.add_consumer(
                topology.STREAM_EVENTS,
                ConsumerConfig(durable_name="orga-pull", filter_subject="constellation.events.isr.orga.>"),
            ),
        )
        # nats-py's subscribe and pull_subscribe look the consumer up first: refused too.
        await reader.refused(
            "$JS.API.CONSUMER.INFO.CONSTELLATION_EVENTS.orga-detections",
            js.subscribe("constellation.events.isr.orga.>", durable="orga-detections", manual_ack=True),
        )
        # A pull from a consumer inside its organisation that someone else (here the server) made.
        await rt.js.add_consumer(
            topology.STREAM_EVENTS,
            ConsumerConfig(durable_name="orga-made", filter_subject="constellation.events.isr.orga.>"),
        )
        await reader.refused(
            "$JS.API.CONSUMER.MSG.NEXT.CONSTELLATION_EVENTS.orga-made",
            nc.request("$JS.API.CONSUMER.MSG.NEXT.CONSTELLATION_EVENTS.orga-made", b'{"batch":1}', timeout=0.5),
        )

        # Consumers whose filter reaches beyond its organisation, pulls and stream admin: refused.
        for filter_subject in ("constellation.events.isr.>", "constellation.events.isr.orgb.>", ">"):
            await reader.refused(
                "$JS.API.CONSUMER.CREATE.CONSTELLATION_EVENTS",
                reader.quick.add_consumer(
                    topology.STREAM_EVENTS,
                    ConsumerConfig(name=f"c{uuid.uuid4().hex[:8]}", filter_subject=filter_subject),
                ),
            )
        await reader.refused(
            "$JS.API.CONSUMER.MSG.NEXT.CONSTELLATION_EVENTS.detection-processor",
            nc.request("$JS.API.CONSUMER.MSG.NEXT.CONSTELLATION_EVENTS.detection-processor", b"{}", timeout=0.5),
        )
        await reader.refused(
            "$JS.API.STREAM.INFO.CONSTELLATION_EVENTS", reader.quick.stream_info(topology.STREAM_EVENTS)
        )
        await reader.refused(
            topology.telemetry_subject("orga", a1),
            reader.quick.publish(topology.telemetry_subject("orga", a1), telemetry()),
        )
        await reader.refused(f"$KV.{STATE}.{a1}", kv.put(a1, b"{}"))

        # A new entity of its organisation becomes readable (the users block follows the registry).
        await rt.services.registry.create_entity(
            "orga", EntityCreate(entity_id="a-new", name="new", entity_type="sensor_platform")
        )
        await rt.js.publish(topology.telemetry_subject("orga", "a-new"), telemetry())
        await eventually(lambda: state(rt, "a-new"), what="a-new state")

        async def readable() -> bool:
            try:
                return (await kv.get("a-new")).value is not None
            except Exception:  # noqa: BLE001 - refused until the users block is reloaded
                return False

        await eventually(readable, timeout=5, what="the new entity readable")
    finally:
        await nc.close()


async def test_organisation_reader_cannot_make_the_server_deliver_into_another_organisation(
    make_runtime: Any,
) -> None:
    """Reply-subject injection by an organisation reader: push deliver, pull reply, direct-get reply.

    nats-server does not check a deliver or reply subject against publish permissions;
    with consumers an organisation reader could have the server copy its organisation's
    detections into ``orgb``'s subjects. Consumers are refused; an API answer (or a
    direct get's) aimed there is captured but dead-lettered by the ingest guard.
    """
    rt: Runtime = await make_runtime(nats_url="", nats_port=-1)
    a1, b1 = await _world(rt)
    reader, _key = await _reader(rt, "orga")
    target = topology.detection_subject("orgb", b1)
    telemetry_target = topology.telemetry_subject("orgb", b1)

    async def landed() -> list[str]:
        """Copies of orga's detections captured where orgb's subjects are stored.

        (A push delivery into another stream is stored there under the original subject, so
        the telemetry stream is searched for detections, not for the target subject.)
        """
        events = await stream_messages(rt.js, topology.STREAM_EVENTS)
        telemetry_msgs = await stream_messages(rt.js, topology.STREAM_TELEMETRY)
        return [m.subject for m in events if m.subject == target] + [
            m.subject for m in telemetry_msgs if b'"organization_id"' in (m.data or b"")
        ]

    before = await state(rt, b1)
    try:
        # (1) A push consumer of its own detections delivering into orgb's telemetry (another stream:
        # the server refuses a deliver subject its own stream captures, "forms a cycle").
        await reader.refused(
            "$JS.API.CONSUMER.CREATE.CONSTELLATION_EVENTS.redirect",
            reader.quick.add_consumer(
                topology.STREAM_EVENTS,
                ConsumerConfig(
                    name="redirect",
                    filter_subject="constellation.events.isr.orga.>",
                    deliver_subject=telemetry_target,
                    deliver_policy=DeliverPolicy.ALL,
                ),
            ),
        )
        # (2) A pull request whose reply subject is orgb's event subject, on a consumer of orga's detections.
        await rt.js.add_consumer(
            topology.STREAM_EVENTS,
            ConsumerConfig(durable_name="orga-shared", filter_subject="constellation.events.isr.orga.>"),
        )
        pull = "$JS.API.CONSUMER.MSG.NEXT.CONSTELLATION_EVENTS.orga-shared"
        await reader.refused(pull, reader.nc.publish(pull, b'{"batch":5}', reply=target), fails=False)
        # (3) An API request it may make, answered into orgb's telemetry: captured, then dead-lettered.
        await reader.nc.publish("$JS.API.INFO", b"", reply=telemetry_target)
        await reader.nc.flush()

        async def dead_lettered() -> bool:
            return any(
                (m.headers or {}).get(DLQ_SUBJECT) == telemetry_target
                and (m.headers or {}).get(DLQ_REASON) == REPLY_INJECTION
                for m in await dlq(rt.js)
            )

        await eventually(dead_lettered, timeout=5, what="the redirected API answer dead-lettered")
        # Give a redirect the time it would have needed, then: nothing of orga's in orgb's events.
        await rt.js.publish(topology.detection_subject("orga", a1), _detection("orga", a1, "t-after"))
        await eventually(lambda: rt.workers.stats()["events"]["processed"] >= 3, what="the later detection")
        assert await landed() == [target]  # only _world's own detection of b1
        assert await state(rt, b1) == before
    finally:
        await reader.nc.close()


async def test_reader_revocation_cuts_the_connection_within_2_s(make_runtime: Any) -> None:
    rt: Runtime = await make_runtime(nats_url="", nats_port=-1)
    await seed(rt, org_id="orga", entities=1, prefix="a")
    admin = await rt.services.apikeys.create("tests", "admin", ["read", "commands", "admin"], None)
    reader, key = await _reader(rt, None)
    await reader.nc.subscribe("constellation.events.>")
    async with api_client(create_app(rt), admin.key) as client:
        start = time.monotonic()
        assert (await client.post(f"/admin/keys/{key.key_id}/revoke")).status_code == 200
        await asyncio.wait_for(reader.closed.wait(), REVOCATION_BUDGET + 1)
    took = reader.closed_at - start
    print(f"revocation (console) -> reader disconnected in {took * 1000:.0f} ms")
    assert took <= REVOCATION_BUDGET
    await reader.nc.close()


async def test_reader_keys_are_issued_shown_once_listed_and_audited(make_runtime: Any, tmp_path: Path) -> None:
    rt: Runtime = await make_runtime(nats_url="", nats_port=-1)
    await seed(rt, org_id="orga", entities=1, prefix="a")
    env = {**os.environ, "OVERWATCH_DATA_DIR": rt.settings.data_dir}

    async def cli(*args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            OVERWATCH, "apikey", *args, env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, out
        return out.decode()

    fabric = await cli("create", "--name", "dash", "--role", "viewer", "--nats")
    assert "nats credentials:        reader (every organisation)" in fabric
    assert "nats seed (keep secret): SU" in fabric and "nats inbox prefix:       _INBOX." in fabric
    scoped = await cli("create", "--name", "orga-dash", "--role", "viewer", "--nats", "--org", "orga")
    assert "reader (organisation orga)" in scoped
    device = await cli("create", "--name", "cam", "--role", "operator", "--nats", "--org", "orga")
    assert "device (organisation orga)" in device
    listing = await cli("list")
    assert "nats=reader" in listing and "nats=device" in listing
    entries = await audit_db.query_audit(rt.db, action="apikey.create")
    assert sum(1 for e in entries if '"reader"' in e.diff) == 2, entries
    with pytest.raises(Invalid, match="read-only"):
        await rt.services.apikeys.create("tests", "x", ["read", "commands"], None, nats=True, nats_kind="reader")
    with pytest.raises(Invalid, match="organisation"):
        await rt.services.apikeys.create("tests", "x", ["read"], None, nats=True, nats_kind="device")

    admin = await rt.services.apikeys.create("tests", "admin", ["read", "commands", "admin"], None)
    async with api_client(create_app(rt), admin.key) as client:
        page = await client.post("/admin/keys/", data={"name": "ui-reader", "role": "viewer", "nats": "reader"})
        assert page.status_code == 200, page.text
        assert "reader · every organisation" in page.text and "NATS NKey seed" in page.text
        assert "Macro" not in page.text  # the flash message, not the macro that renders it
        again = await client.get("/admin/keys/")
        assert "ui-reader" in again.text and "<td>reader</td>" in again.text and "NATS NKey seed" not in again.text
