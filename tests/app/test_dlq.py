"""The dead-letter pages: list with reason and original subject, paging, replay (operator+
of the message's organisation) and discard (admin), all audited; and the two flows that
matter: an invalid message replayed dead-letters again, and a message dead-lettered for an
unknown entity is applied by its worker once the entity exists and it is replayed.
"""

from __future__ import annotations

import re

import httpx
import pytest
from nats.js.api import RawStreamMsg

from app.runtime import Runtime
from core import topology
from core.contracts.registry import Position
from db import audit as audit_db
from services.schemas import EntityCreate
from tests.helpers import dlq, eventually, seed, state, telemetry
from workers import base

DLQ_SUBJECT = topology.dlq_subject(topology.STREAM_TELEMETRY)


async def _dead_letter(runtime: Runtime, org: str, entity: str, reason: str, payload: bytes = b"{}") -> int:
    """A dead letter exactly as ``workers.base.dead_letter`` writes it; returns its DLQ sequence."""
    ack = await runtime.js.publish(
        DLQ_SUBJECT,
        payload,
        headers={
            base.DLQ_REASON: reason,
            base.DLQ_SUBJECT: topology.telemetry_subject(org, entity),
            base.DLQ_STREAM: topology.STREAM_TELEMETRY,
            base.DLQ_SEQUENCE: "7",
            base.DLQ_WORKER: "telemetry",
            base.DLQ_TIME: "2025-01-01T00:00:00+00:00",
        },
    )
    return ack.seq


def _seqs(text: str) -> list[int]:
    return [int(s) for s in re.findall(r'href="/nats/dlq/(\d+)"', text)]


# ---------------------------------------------------------------- the flows
@pytest.mark.timeout(60)
async def test_invalid_message_replayed_dead_letters_again(runtime: Runtime, org1_operator: httpx.AsyncClient) -> None:
    await seed(runtime, "org1", 1, prefix="ent")
    subject = topology.telemetry_subject("org1", "ent-0")
    await runtime.js.publish(subject, b'{"position": "not an object" <broken>')
    first = (await eventually(lambda: dlq(runtime.js), 15, what="dead letter"))[0]
    assert first.headers and first.headers[base.DLQ_SUBJECT] == subject
    page = await org1_operator.get("/nats/dlq")
    assert page.status_code == 200
    assert subject in page.text and first.headers[base.DLQ_REASON][:20] in page.text
    assert f'name="seq" value="{first.seq}"' in page.text and 'id="dlq-replay-selected"' in page.text
    detail = await org1_operator.get(f"/nats/dlq/{first.seq}")
    assert "&lt;broken&gt;" in detail.text and "<broken>" not in detail.text  # payload escaped
    before = (await runtime.js.stream_info(topology.STREAM_TELEMETRY)).state.last_seq

    replay = await org1_operator.post("/nats/dlq/replay", data={"seq": str(first.seq)})
    assert replay.status_code == 303 and "replayed=1" in replay.headers["location"]
    # The original payload went back to the original subject, the dead letter was removed ...
    replayed = await runtime.js.get_msg(topology.STREAM_TELEMETRY, before + 1)
    assert replayed.subject == subject and replayed.data == first.data
    assert not any(k.startswith("Overwatch-Dlq") for k in (replayed.headers or {}))
    assert await runtime.services.nats_dlq.get(first.seq) is None
    # ... and, still invalid, it is dead-lettered again: one message in the queue, a new sequence.
    again = await eventually(lambda: _after(runtime, first.seq), 15, what="second dead letter")
    assert len(await dlq(runtime.js)) == 1 and again.headers[base.DLQ_SUBJECT] == subject
    assert again.data == first.data
    rows = await audit_db.query_audit(runtime.db, action="nats.dlq.replay")
    assert rows and rows[0].org_id == "org1" and rows[0].outcome == "success" and subject in rows[0].target
    # Replaying what is already gone is a 404, never a second publish.
    assert (await org1_operator.post("/nats/dlq/replay", data={"seq": str(first.seq)})).status_code == 404


async def _after(runtime: Runtime, seq: int) -> RawStreamMsg | None:
    msgs = [m for m in await dlq(runtime.js) if m.seq > seq]
    return msgs[0] if msgs else None


@pytest.mark.timeout(60)
async def test_unknown_entity_dead_letter_is_applied_after_registration_and_replay(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await seed(runtime, "org1", 1, prefix="ent")
    subject = topology.telemetry_subject("org1", "late-0")
    await runtime.js.publish(subject, telemetry(battery=42.0))
    # The worker waits a couple of deliveries for the registry, then gives up.
    letter = (await eventually(lambda: dlq(runtime.js), 20, what="dead letter"))[0]
    assert "unknown entity late-0" in letter.headers[base.DLQ_REASON]
    assert await state(runtime, "late-0") is None
    await runtime.services.registry.create_entity(
        "org1",
        EntityCreate(
            entity_id="late-0",
            name="Late",
            entity_type="aircraft_multirotor",
            position=Position(latitude=1.0, longitude=2.0),
        ),
    )
    done = await client.post("/nats/dlq/replay", data={"seq": str(letter.seq)})
    assert done.status_code == 303 and "replayed=1" in done.headers["location"]

    async def applied() -> bool:
        doc = await state(runtime, "late-0")
        return bool(doc and (doc.get("power") or {}).get("battery_remaining") == 42.0)

    await eventually(applied, 15, what="replayed telemetry applied to the state bucket")
    assert await dlq(runtime.js) == []


# ---------------------------------------------------------------- access, paging, discard
async def test_paging_visibility_and_permissions(
    runtime: Runtime,
    client: httpx.AsyncClient,
    viewer: httpx.AsyncClient,
    org1_operator: httpx.AsyncClient,
    org2_operator: httpx.AsyncClient,
) -> None:
    org1 = [await _dead_letter(runtime, "org1", "e1", f"reason <{i}>") for i in range(30)]
    org2 = await _dead_letter(runtime, "org2", "e2", "other org")
    first = await client.get("/nats/dlq")
    assert first.status_code == 200 and "31 dead letters" in first.text
    assert _seqs(first.text) == [org2, *reversed(org1[-24:])]  # newest first, 25 a page
    assert "reason &lt;29&gt;" in first.text  # escaped
    older = re.search(r'href="/nats/dlq\?before=(\d+)"', first.text)
    assert older
    second = await client.get(f"/nats/dlq?before={older.group(1)}")
    assert _seqs(second.text) == list(reversed(org1[:6]))
    # Callers who see only some organisations see only their dead letters.
    own = await org1_operator.get("/nats/dlq")
    assert org2 not in _seqs(own.text) and "other org" not in own.text and len(_seqs(own.text)) == 25
    assert (await org1_operator.get(f"/nats/dlq/{org2}")).status_code == 404
    assert (await org2_operator.post("/nats/dlq/replay", data={"seq": str(org1[0])})).status_code == 404
    # Viewers read but get no controls, and are refused when calling them directly.
    vpage = await viewer.get("/nats/dlq")
    assert 'name="seq"' not in vpage.text and "dlq-replay-selected" not in vpage.text
    assert (await viewer.post("/nats/dlq/replay", data={"seq": str(org1[0])})).status_code == 403
    assert (await viewer.post("/nats/dlq/discard", data={"seq": str(org1[0]), "confirm": "yes"})).status_code == 403
    # Operators replay but do not discard.
    assert 'id="dlq-discard-selected"' not in (await org1_operator.get("/nats/dlq")).text
    denied = await org1_operator.post("/nats/dlq/discard", data={"seq": str(org1[0]), "confirm": "yes"})
    assert denied.status_code == 403
    assert len(await dlq(runtime.js)) == 31
    # Many at once: each replayed, removed and audited.
    many = await org1_operator.post("/nats/dlq/replay", data={"seq": [str(org1[0]), str(org1[1])]})
    assert many.status_code == 303 and "replayed=2" in many.headers["location"]
    assert {m.seq for m in await dlq(runtime.js)}.isdisjoint({org1[0], org1[1]})
    assert len(await audit_db.query_audit(runtime.db, action="nats.dlq.replay")) == 2
    # Bad input is a 4xx with a reason.
    assert (await client.post("/nats/dlq/replay", data={})).status_code == 422
    assert (await client.post("/nats/dlq/replay", data={"seq": "x"})).status_code == 422
    assert (await client.get("/nats/dlq/0")).status_code in (400, 404)


async def test_discard_needs_confirmation_and_is_audited(runtime: Runtime, client: httpx.AsyncClient) -> None:
    keep = await _dead_letter(runtime, "org1", "e1", "keep me")
    drop = [await _dead_letter(runtime, "org1", "e1", f"drop {i}") for i in range(2)]
    page = await client.get("/nats/dlq")
    assert 'id="dlq-discard-selected"' in page.text
    form = {"seq": [str(s) for s in drop]}
    confirm = await client.post("/nats/dlq/discard", data=form)
    assert confirm.status_code == 200 and 'id="dlq-discard-confirm"' in confirm.text and "drop 1" in confirm.text
    assert len(await dlq(runtime.js)) == 3  # nothing gone before confirming
    done = await client.post("/nats/dlq/discard", data={**form, "confirm": "yes"})
    assert done.status_code == 303 and "discarded=2" in done.headers["location"]
    assert [m.seq for m in await dlq(runtime.js)] == [keep]
    rows = await audit_db.query_audit(runtime.db, action="nats.dlq.discard")
    assert len(rows) == 2 and all(r.org_id == "org1" and "drop" in r.detail for r in rows)
    result = await client.get(done.headers["location"])
    assert "2 discarded" in result.text
