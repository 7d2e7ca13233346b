"""One organisation's flood cannot evict another's dead letters (issue #11 finding 8).

Before: every organisation's dead letters shared ``constellation.dlq.{stream}`` in a
stream that evicted the oldest at its byte limit; 2,000 invalid 60 KB messages from one
device pushed out every other organisation's dead letters within seconds. Now each
organisation's dead letters of a stream are one subject with a quota, the stream never
evicts (``discard: new``), payloads are cut, and what a full quota refuses is counted
and shown. Against the real runtime with the embedded nats-server (its byte limits on).
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from nats.js.api import DiscardPolicy

from app.runtime import Runtime
from core import topology
from fabric.server import EmbeddedNats
from services.nats_console.dlq import ReplayError, dead_letter
from tests.conftest import key_client
from tests.helpers import dlq, eventually, seed, telemetry
from workers import base

QUOTA = 200  # dead letters per organisation and stream in these tests
CUT = 4096  # bytes of a dead-lettered payload kept
FLOOD = 1200  # 72 MB: nearly three times what the DLQ may hold; the finding's 2,000 only took longer
BIG = 60_000  # bytes: under the telemetry worker's 64 KiB limit, so invalid only as JSON


def _by_org(msgs: list[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for msg in msgs:
        org = (msg.headers or {}).get(base.DLQ_SUBJECT, "").split(".")[2]
        out.setdefault(org, []).append(msg)
    return out


@pytest.fixture
async def rt(make_runtime: Any) -> AsyncIterator[Runtime]:
    """The embedded server with a 512 MiB store: the DLQ may hold 25.6 MiB, 1,200 × 60 KB would not fit."""
    yield await make_runtime(
        nats_url="", nats_port=-1, nats_max_file_store="512MiB", dlq_max_per_subject=QUOTA, dlq_max_payload=CUT
    )


async def test_a_flood_of_one_organisation_evicts_nobody_and_is_counted(rt: Runtime) -> None:
    (a1,) = await seed(rt, "orga", 1, prefix="a")
    (b1,) = await seed(rt, "orgb", 1, prefix="b")
    for i in range(30):
        await rt.js.publish(topology.telemetry_subject("orgb", b1), b"not json %d" % i)
    earlier = await eventually(lambda: _count(rt, "orgb", 30), 20, what="org B's dead letters")
    earlier_seqs = {int(m.seq or 0) for m in earlier}

    # Org A's device floods: 1,200 invalid 60 KB messages, as fast as the connection goes.
    flood_subject = topology.telemetry_subject("orga", a1)
    junk = b"{" + b"x" * (BIG - 1)
    for _ in range(FLOOD):
        await rt.nc.publish(flood_subject, junk)
    await rt.nc.flush(timeout=120)  # 72 MB into JetStream: a deadline, not a speed requirement

    async def flood_handled() -> bool:
        try:
            info = await rt.js.stream_info(
                topology.STREAM_DLQ, subjects_filter=topology.dlq_subject(topology.STREAM_TELEMETRY, "orga")
            )
        except nats.errors.TimeoutError:
            return False  # the server is busy storing the flood
        return rt.workers.dlq_refused()["orga"] + info.state.messages >= FLOOD

    started = time.monotonic()
    await eventually(flood_handled, 60, 0.1, what="the flood dead-lettered or refused")
    print(f"flood of {FLOOD} handled in {time.monotonic() - started:.1f} s")

    stored = _by_org(await dlq(rt.js))
    assert {int(m.seq or 0) for m in stored["orgb"]} == earlier_seqs, "org B lost dead letters"
    assert len(stored["orga"]) == QUOTA
    assert rt.workers.dlq_refused()["orga"] == FLOOD - QUOTA
    assert rt.workers.dlq_refused()["orgb"] == 0
    for msg in stored["orga"]:
        assert msg.subject == topology.dlq_subject(topology.STREAM_TELEMETRY, "orga")
        assert len(msg.data or b"") == CUT and msg.headers[base.DLQ_ORIGINAL_SIZE] == str(BIG)
    info = await rt.js.stream_info(topology.STREAM_DLQ)
    assert info.config.discard == DiscardPolicy.NEW and info.config.max_msgs_per_subject == QUOTA
    assert info.state.bytes < (QUOTA + 40) * (CUT + 1024), "the flood's share is bounded"

    # Org B still gets new dead letters, and its telemetry still works.
    await rt.js.publish(topology.telemetry_subject("orgb", b1), b"still not json")
    await eventually(lambda: _count(rt, "orgb", 31), what="org B's next dead letter")
    await rt.js.publish(topology.telemetry_subject("orgb", b1), telemetry(battery=12.0))

    # The refused count is visible: /metrics (a total) and each caller's dead-letter page.
    async with await key_client(rt, ["read", "commands", "admin"], None) as admin:
        metrics = (await admin.get("/metrics")).text
        assert re.search(rf"^overwatch_dlq_refused_total\{{[^}}]*\}} {FLOOD - QUOTA}\.0$", metrics, re.M), metrics
        assert re.search(
            rf'^overwatch_worker_dlq_refused_total\{{[^}}]*worker="telemetry"[^}}]*\}} {FLOOD - QUOTA}\.0$',
            metrics,
            re.M,
        )
        page = await admin.get("/nats/dlq")
        assert page.status_code == 200
        refused = re.search(r'id="dlq-refused"[^>]*>(.*?)</', page.text, re.S)
        assert refused and "1,000" in refused.group(1) and "orga" in refused.group(1), page.text[:3000]
    async with await key_client(rt, ["read"], "orgb") as viewer_b:
        page_b = await viewer_b.get("/nats/dlq")
        assert page_b.status_code == 200 and "orga" not in page_b.text and 'id="dlq-refused"' not in page_b.text

    # A cut dead letter says so and is not replayed as if it were whole.
    item = dead_letter(stored["orga"][0])
    with pytest.raises(ReplayError, match="first 4096 bytes"):
        await rt.services.nats_dlq.replay(item)


async def _count(rt: Runtime, org: str, n: int) -> list[Any] | None:
    mine = _by_org(await dlq(rt.js)).get(org, [])
    return mine if len(mine) >= n else None


async def test_an_existing_dead_letter_stream_is_brought_under_quotas(nats_server: EmbeddedNats) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    try:
        legacy = next(s.config for s in topology.STREAMS if s.config.name == topology.STREAM_DLQ)
        await js.add_stream(
            legacy.evolve(discard=DiscardPolicy.OLD, discard_new_per_subject=False, max_msgs_per_subject=-1)
        )
        old_subject = topology.dlq_subject(topology.STREAM_TELEMETRY)  # every organisation's, before quotas
        for org, n in (("orga", 6), ("orgb", 3)):
            for i in range(n):
                headers = {
                    base.DLQ_SUBJECT: topology.telemetry_subject(org, "e1"),
                    base.DLQ_REASON: f"{org} {i}",
                    "Nats-Msg-Id": f"dlq-x-{org}-{i}",
                }
                await js.publish(old_subject, f"{org}-{i}".encode(), headers=headers)
        await js.publish(topology.dlq_subject("VIDEO"), b"frame", headers={base.DLQ_SUBJECT: "constellation.video.x"})

        report = await topology.ensure_topology(js, None, dlq_max_per_subject=4)
        assert report[topology.STREAM_DLQ] == "updated"
        info = await js.stream_info(topology.STREAM_DLQ, subjects_filter=">")
        assert info.config.discard == DiscardPolicy.NEW and info.config.discard_new_per_subject
        assert info.state.subjects == {
            topology.dlq_subject(topology.STREAM_TELEMETRY, "orga"): 4,  # its quota: the 4 newest
            topology.dlq_subject(topology.STREAM_TELEMETRY, "orgb"): 3,
            topology.dlq_subject("VIDEO"): 1,  # no organisation: stays
        }
        kept = _by_org([m for m in await dlq(js) if m.subject != topology.dlq_subject("VIDEO")])
        assert [m.data for m in kept["orga"]] == [b"orga-2", b"orga-3", b"orga-4", b"orga-5"]
        assert [m.headers[base.DLQ_REASON] for m in kept["orgb"]] == ["orgb 0", "orgb 1", "orgb 2"]
        assert all("Nats-Msg-Id" not in (m.headers or {}) for m in kept["orgb"])
        assert set((await topology.ensure_topology(js, None, dlq_max_per_subject=4)).values()) == {"ok"}
        # A smaller quota later: applied on the next start, each organisation keeps its newest.
        assert (await topology.ensure_topology(js, None, dlq_max_per_subject=2))[topology.STREAM_DLQ] == "updated"
        kept = _by_org([m for m in await dlq(js) if m.subject != topology.dlq_subject("VIDEO")])
        assert [m.data for m in kept["orga"]] == [b"orga-4", b"orga-5"] and len(kept["orgb"]) == 2
    finally:
        await nc.close()


def test_dead_letter_subjects() -> None:
    assert topology.dlq_subject("CONSTELLATION_TELEMETRY", "o1") == "constellation.dlq.o1.CONSTELLATION_TELEMETRY"
    assert topology.dlq_subject("VIDEO") == "constellation.dlq.VIDEO"
    with pytest.raises(topology.InvalidToken):
        topology.dlq_subject("CONSTELLATION_TELEMETRY", "o.1")


async def test_a_bad_video_frame_is_filed_under_its_entitys_organisation(runtime: Runtime) -> None:
    """Video subjects carry no organisation; the registry's is used, so frames use their org's quota."""
    (e0, _e1) = await seed(runtime)
    await runtime.nc.publish(topology.video_subject(e0), b"not a jpeg")  # type: ignore[union-attr]
    msgs = await eventually(
        lambda: _matching(runtime, topology.dlq_subject("VIDEO", "org1")), what="video dead letter"
    )
    assert "not a JPEG" in (msgs[0].headers or {}).get(base.DLQ_REASON, "")
    assert dead_letter(msgs[0]).org_id == "org1", "the console shows it to its organisation"


async def _matching(runtime: Runtime, subject: str) -> list[Any] | None:
    found = [m for m in await dlq(runtime.js) if m.subject == subject]
    return found or None
