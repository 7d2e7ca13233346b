"""Hostile input: every bad message lands in the DLQ with a reason, workers keep running,
and the valid traffic interleaved with it is all applied."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import msgspec
import pytest

from app.runtime import Runtime
from core import topology
from tests.helpers import dlq, eventually, seed, state, telemetry
from workers import base

pytestmark = pytest.mark.slow

T = "constellation.telemetry"
PREFIX = 256  # payload bytes a dead letter keeps at least (longer ones may be cut): how copies are matched

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
        by_subject[(headers[base.DLQ_SUBJECT], (msg.data or b"")[:PREFIX])] = headers[base.DLQ_REASON]
    for subject, payload, reason in corpus:
        got = by_subject.get((subject, payload[:PREFIX]))
        assert got is not None, f"missing from DLQ: {subject} {payload[:40]!r}"
        assert reason.lower() in got.lower(), f"{subject}: reason {got!r} lacks {reason!r}"

    # Valid traffic interleaved with the corpus was all applied (latest wins).
    for entity_id in (e0, e1):
        doc = await eventually(lambda eid=entity_id: _seq_is(runtime, eid, valid_seq), what=f"{entity_id} final seq")
        assert doc
    assert all(w.stats.restarts == 0 for w in runtime.workers.workers), runtime.workers.stats()
    assert all(runtime.workers.status().values())
    checks = await runtime.services.health.readiness()
    assert all(c["ok"] for c in checks.values()), checks


async def _dead_count(runtime: Runtime, want: int) -> list[Any] | None:
    dead = await dlq(runtime.js)
    return dead if len(dead) >= want else None


async def _seq_is(runtime: Runtime, entity_id: str, seq: int) -> bool:
    doc = await state(runtime, entity_id)
    return bool(doc and (doc.get("extras") or {}).get("seq") == seq)


# ---------------------------------------------------------------- hostile data against every page
# Acceptance 3 of issue 11: nested 10,000 deep, lone surrogates, ~1 MiB values and ids with
# '/ .. ? # %' go in through every path (telemetry, events, KV values, the DLQ), then every
# console page that can show them is fetched: none may answer 5xx.

DEEP = b"[" * 10_000 + b"]" * 10_000
DEEP_OBJECT = b'{"x": ' + b'{"y": ' * 10_000 + b"1" + b"}" * 10_000 + b"}"
SURROGATE_JSON = b'{"name": "\\ud800 lone", "power": {"battery_remaining": 50}, "k\\udfff": "\\udc00"}'
SURROGATE_RAW = b'{"name": "\xed\xa0\x80"}'  # a surrogate encoded as UTF-8: not valid UTF-8 at all
HUGE = 1024 * 1024 - 4096  # a little under 1 MiB: stream and KV limits are 1 MiB including headers
HOSTILE_IDS = ["x/../../nats/streams/CONSTELLATION_DLQ/purge?", "a?b#c%d", "..", "%2e%2e", "a%2Fb", "q&r=s"]


def _alert(code: str) -> bytes:
    return msgspec.json.encode({"event_type": "alert", "severity": "high", "code": code, "message": "hostile"})


def _hostile_messages() -> list[tuple[str, bytes, str]]:
    """(subject, payload, fragment of the dead-letter reason) for bad input from devices."""
    events = "constellation.events"
    out: list[tuple[str, bytes, str]] = [
        (f"{T}.org1.ent-0", DEEP, "nested too deeply"),
        (f"{T}.org1.ent-0", SURROGATE_JSON, "invalid JSON"),
        (f"{T}.org1.ent-0", SURROGATE_RAW, "invalid JSON"),
        (f"{events}.status.org1.ent-1", DEEP_OBJECT, "nested too deeply"),
        (f"{events}.status.org1.ent-1", SURROGATE_JSON, "invalid JSON"),
    ]
    for hostile in HOSTILE_IDS:
        out.append((f"{events}.device.org1.ent-1", _alert(hostile), "invalid alert code"))
        out.append((f"{events}.isr.org1.ent-1", _det(det_track_id=hostile), "invalid track_id"))
        if "." not in hostile:  # a '.' would only add subject tokens; these become one odd token
            out.append((f"{T}.org1.{hostile}", telemetry(), "invalid subject tokens"))
    return out


async def _plant(runtime: Runtime, e0: str, e1: str) -> list[tuple[str, str, int, int]]:
    """Put hostile values in through every path; return (bucket, key, revision 1, revision 2) written."""
    js = runtime.js
    for subject, payload, _reason in _hostile_messages():
        await js.publish(subject, payload)
    # A detection with odd (but valid) metadata and a device alert with a valid code, so the
    # alert, entity and detection pages have rows to draw.
    await js.publish("constellation.events.device.org1.ent-1", _alert("LOW_FUEL"))
    await js.publish(
        "constellation.events.isr.org1.ent-1",
        _det(det_metadata={"threat_level": "HIGH_THREAT", "reason": "<script>x</script>\u202e", "deep": [[[[1]]]]}),
    )
    # Dead letters as a worker would write them, with payloads no worker would have accepted.
    for payload in (DEEP, DEEP_OBJECT, SURROGATE_JSON, SURROGATE_RAW, b'{"pad": "' + b"y" * HUGE + b'"}'):
        await js.publish(
            topology.dlq_subject(topology.STREAM_TELEMETRY),
            payload,
            headers={
                base.DLQ_REASON: "planted by the hostile corpus",
                base.DLQ_SUBJECT: f"{T}.org1.a?b#c%d",
                base.DLQ_STREAM: topology.STREAM_TELEMETRY,
                base.DLQ_SEQUENCE: "1",
                base.DLQ_WORKER: "telemetry",
                base.DLQ_TIME: "2025-01-01T00:00:00+00:00",
            },
        )
    # KV values (the state bucket's free-form sub-keys): keys with '/' and '=' (valid KV key
    # characters) and with '?', '#' and '%' (which only a raw publish can write).
    written: list[tuple[str, str, int, int]] = []
    values = [DEEP, DEEP_OBJECT, SURROGATE_JSON, SURROGATE_RAW, b'"' + b"z" * HUGE + b'"', bytes(range(256))]
    for i, value in enumerate(values):
        key = f"{e0}.hostile/{i}=x" if i % 2 else f"{e0}.q?r#{i}%t"
        first = await runtime.kv_state.put(key, value, validate_keys=False)
        second = await runtime.kv_state.put(key, value[: len(value) // 2] or b"-", validate_keys=False)
        written.append((topology.BUCKET_STATE, key, first, second))
    # The entity's own state key, as a device (or anyone with write access) could overwrite it:
    # each hostile value in turn, ending with a state-shaped document that is deep and huge.
    nested: Any = 1
    for _ in range(900):
        nested = {"n": nested}
    shaped = {"entity_id": e1, "org_id": "org1", "name": "\u202e" + "w" * 200_000, "extras": {"deep": nested}}
    revisions = [await runtime.kv_state.put(e1, value) for value in (DEEP_OBJECT, SURROGATE_JSON, SURROGATE_RAW)]
    revisions.append(await runtime.kv_state.put(e1, msgspec.json.encode(shaped)))
    written.append((topology.BUCKET_STATE, e1, revisions[0], revisions[-1]))
    return written


async def _pages(runtime: Runtime, keys: list[tuple[str, str, int, int]]) -> list[str]:
    """Every console page (and API endpoint) that can show what ``_plant`` put in."""

    def q(value: object) -> str:
        return quote(str(value), safe="")

    pages = [
        "/",
        "/fleet",
        "/fleet?q=%2F..%3F%23%25",
        "/fleet?q=%ff%ED%A0%80&sort=%ff&show=%00",
        "/entities/%ff",
        "/entities/%ED%A0%80",
        f"/nats/messages?stream={topology.STREAM_EVENTS}&subject=%ff",
        f"/nats/kv/{topology.BUCKET_STATE}/key?key=%ED%A0%80",
        f"/nats/kv/{topology.BUCKET_STATE}?filter=%ff",
        "/api/entities?org_id=%ff",
        "/map",
        "/map/trails.geojson",
        "/entities/ent-0",
        "/entities/ent-1",
        "/alerts?status=all",
        "/alerts/rules",
        "/system/metrics",
        "/metrics",
        "/nats",
        "/nats/streams",
        "/nats/consumers",
        "/nats/messages",
        "/nats/kv",
        "/nats/dlq",
        "/nats/server",
        "/api/entities",
        "/api/entities/ent-1",
        "/api/v1/alerts",
        "/api/v1/organizations/org1/entities",
        "/api/v1/organizations/org1/entities/ent-1/state",
        "/api/v1/organizations/org1/entities/ent-1/detections",
        "/api/v1/organizations/org1/entities/ent-1/alerts",
        "/api/v1/organizations/org1/entities/ent-1/track",
    ]
    for hostile in HOSTILE_IDS:
        pages += [
            f"/entities/{q(hostile)}",
            f"/nats/streams/{q(hostile)}",
            f"/nats/kv/{q(hostile)}",
            f"/nats/messages?stream={q(topology.STREAM_EVENTS)}&subject={q(hostile)}",
            f"/api/entities/{q(hostile)}",
        ]
    for stream in [s.config.name for s in topology.STREAMS]:
        info = await runtime.js.stream_info(stream or "")
        pages += [
            f"/nats/streams/{q(stream)}",
            f"/nats/messages?stream={q(stream)}&from=end",
            f"/nats/messages?stream={q(stream)}&from=start",
        ]
        for consumer in await runtime.js.consumers_info(stream or ""):
            pages.append(f"/nats/consumers/{q(stream)}/{q(consumer.name)}")
        if info.state.messages:
            first, last = info.state.first_seq, info.state.last_seq
            pages += [f"/nats/messages/{q(stream)}/{seq}" for seq in range(first, last + 1)]
    dead = await dlq(runtime.js)
    pages += [f"/nats/dlq/{m.seq}" for m in dead]
    for bucket, key, first, second in keys:
        pages += [
            f"/nats/kv/{q(bucket)}",
            f"/nats/kv/{q(bucket)}?filter={q(key)}",
            f"/nats/kv/{q(bucket)}/key?key={q(key)}",
            f"/nats/kv/{q(bucket)}/key?key={q(key)}&a=1&b=2",
            f"/nats/kv/{q(bucket)}/edit?key={q(key)}",
            f"/nats/kv/{q(bucket)}/key?key={q(key)}&a={first}&b={second}",
        ]
    return pages


@pytest.mark.timeout(60)
async def test_hostile_data_never_breaks_a_page(runtime: Runtime, client: Any) -> None:
    e0, e1 = await seed(runtime, entities=2)
    await runtime.js.publish(topology.telemetry_subject("org1", e0), telemetry())
    await eventually(lambda: _seq_or_state(runtime, e0), what="entity live")
    keys = await _plant(runtime, e0, e1)
    corpus = _hostile_messages()
    dead = await eventually(lambda: _dead_count(runtime, len(corpus) + 5), timeout=20, what="hostile dead letters")
    by_payload: dict[tuple[str, bytes], str] = {}
    for m in dead:
        headers = m.headers or {}
        by_payload[(headers.get(base.DLQ_SUBJECT, ""), (m.data or b"")[:PREFIX])] = headers.get(base.DLQ_REASON, "")
    for subject, payload, reason in corpus:
        got = by_payload.get((subject, payload[:PREFIX]))
        assert got is not None, f"missing from DLQ: {subject} {payload[:60]!r}"
        assert reason.lower() in got.lower(), f"{subject}: reason {got!r} lacks {reason!r}"

    failures: list[str] = []
    pages = await _pages(runtime, keys)
    for path in pages:
        r = await client.get(path, headers={"accept": "text/html"})
        if r.status_code >= 500:
            failures.append(f"GET {path} -> {r.status_code}")
        elif path.startswith(("/nats/dlq/", "/nats/messages/")) and r.status_code != 200:
            failures.append(f"GET {path} -> {r.status_code}, expected the stored message")
    # The DLQ's actions on the hostile dead letters: discard's confirmation and replay.
    seqs = [str(m.seq) for m in await dlq(runtime.js)][:100]
    r = await client.post("/nats/dlq/discard", data={"seq": seqs})
    if r.status_code >= 500:
        failures.append(f"POST /nats/dlq/discard (confirm page) -> {r.status_code}")
    r = await client.post("/nats/dlq/replay", data={"seq": seqs})
    if r.status_code >= 500:
        failures.append(f"POST /nats/dlq/replay -> {r.status_code}")
    for hostile in HOSTILE_IDS:
        r = await client.post(f"/alerts/{quote(hostile, safe='')}/ack")
        if r.status_code >= 500 or r.status_code < 400:
            failures.append(f"POST /alerts/{hostile}/ack -> {r.status_code}")
    assert not failures, "\n".join(failures)
    assert len(pages) > 100
    assert all(w.stats.restarts == 0 for w in runtime.workers.workers), runtime.workers.stats()


async def _seq_or_state(runtime: Runtime, entity_id: str) -> bool:
    return bool(await state(runtime, entity_id))


# ---------------------------------------------------------------- hostile request bodies (finding 10)
JSON_BODIES: list[tuple[str, str, bytes]] = [
    ("POST", "/api/v1/organizations", DEEP),
    ("POST", "/api/v1/organizations", DEEP_OBJECT),
    ("POST", "/api/v1/organizations", SURROGATE_JSON),
    ("POST", "/api/v1/organizations", SURROGATE_RAW),
    ("POST", "/api/v1/organizations/org1/entities", DEEP_OBJECT),
    ("PUT", "/api/v1/organizations/org1/entities/ent-0", DEEP),
    ("POST", "/api/v1/organizations/org1/entities/ent-0/commands", DEEP_OBJECT),
    ("POST", "/api/v1/organizations", b'{"org_id": "x", "name": "' + b"n" * 2_000_000 + b'"}'),
]
FORM_POSTS: list[tuple[str, bytes]] = [
    ("/admin/keys", b"name=\xff\xfe&role=viewer&expires_days=%ED%A0%80"),
    ("/admin/keys", b"name=" + b"%5B" * 10_000 + b"&role=viewer"),
    ("/nats/dlq/replay", b"seq=%ff&seq=" + b"9" * 400),
    ("/nats/dlq/discard", b"seq=..%2F..%2Fpurge"),
    ("/alerts/%ED%A0%80/ack", b""),
    ("/alerts/..%2F..%2Fnats%2Fstreams%2FCONSTELLATION_DLQ%2Fpurge%3F/ack", b""),
]


async def test_hostile_request_bodies_are_refused_with_a_4xx(runtime: Runtime, client: Any) -> None:
    await seed(runtime, entities=1)
    for method, path, body in JSON_BODIES:
        r = await client.request(method, path, content=body, headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500, (method, path, body[:40], r.status_code, r.text[:300])
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["detail"]
    for path, body in FORM_POSTS:
        r = await client.post(path, content=body, headers={"content-type": "application/x-www-form-urlencoded"})
        assert r.status_code < 500, (path, r.status_code, r.text[:300])
        if not path.startswith("/admin/keys"):  # the key form answers with its page and the error
            assert r.status_code >= 400, (path, r.status_code, r.text[:300])
    # An API key's expiry out of range (1e10 days overflowed the date arithmetic: 500).
    for days in ["1e10", "inf", "nan", "-1", "0", "lots", "1e308"]:
        r = await client.post("/admin/keys", data={"name": f"k{days}", "role": "viewer", "expires_days": days})
        assert 400 <= r.status_code < 500, (days, r.status_code, r.text[:300])
        assert "expir" in r.text.lower() or "days" in r.text.lower() or "number" in r.text.lower()
    names = {k.name for k in await runtime.services.apikeys.list_keys(include_revoked=True)}
    assert not {n for n in names if n.startswith("k")}, names
