"""NATS console: health score (pure), streams, consumers, purge, message browser, tail, server view.

All against a real nats-server and the real app; test streams live beside the topology's.
"""

from __future__ import annotations

import asyncio
import html
import re
from datetime import UTC, datetime

import httpx
import msgspec
from nats.js.api import RetentionPolicy, StreamConfig

from app.runtime import Runtime
from core import topology
from core.subjects import org_of_subject, visibility
from db import audit as audit_db
from fabric.messages import page_backward, page_forward
from services.nats_console import health
from services.nats_console.messages import subject_matches
from services.nats_console.streams import subject_tree
from tests.conftest import LiveServer
from tests.helpers import eventually

ALL = health.HealthInputs(
    lag=0, ack_pending=0, max_ack_pending=1000, processing_ratio=1.0, redelivery_ratio=0.0, connection="stable"
)


# ---------------------------------------------------------------- pure functions
def test_health_score_weights_and_bands() -> None:
    assert health.score(ALL).score == 100 and health.score(ALL).band == "healthy"
    t = health.THRESHOLDS
    assert abs(sum(msgspec.structs.astuple(t.weights)) - 1.0) < 1e-9
    # Lag between 1K and 10K is a warning: 30 % weight at half score → 85, still healthy.
    lagging = health.score(msgspec.structs.replace(ALL, lag=5_000, processing_ratio=1.0))
    assert lagging.score == 85 and lagging.band == "healthy"
    # Lag critical (0 of 30) + slow processing critical (0 of 25) → 45, critical.
    bad = msgspec.structs.replace(ALL, lag=50_000, processing_ratio=0.2)
    assert health.score(bad).score == 45 and health.score(bad).band == "critical"
    # Ack pending 60 % (warning, 10 of 20) and redelivery 3 % (warning, 7.5 of 15) → 82.5.
    mid = msgspec.structs.replace(ALL, ack_pending=600, redelivery_ratio=0.03)
    assert health.score(mid).score in (82, 83)
    # Disconnected costs the 10 % connection weight; warning band starts below 80.
    assert health.score(msgspec.structs.replace(ALL, connection="disconnected")).score == 90
    worse = msgspec.structs.replace(ALL, lag=20_000, processing_ratio=0.7, connection="reconnects")
    assert health.score(worse).score in (52, 53)  # 0 + 12.5 + 20 + 15 + 5
    assert health.score(worse).band == "warning"
    # Idle consumers (nothing to do) are not slow, whatever the ratio.
    assert health.score(msgspec.structs.replace(ALL, processing_ratio=0.0)).score == 100
    assert [c.name for c in health.score(ALL).components] == [
        "lag",
        "processing rate",
        "ack pending",
        "redelivery",
        "connection",
    ]
    assert health.band_of(80) == "healthy" and health.band_of(79) == "warning" and health.band_of(49) == "critical"


def test_connection_and_stall_rules() -> None:
    assert health.connection_state(1, False, None) == "stable"
    assert health.connection_state(0, True, None) == "stable"
    assert health.connection_state(0, False, 5.0) == "stable"
    assert health.connection_state(0, False, 120.0) == "reconnects"
    assert health.connection_state(0, False, 3600.0) == "disconnected"
    assert health.connection_state(0, False, None) == "disconnected"
    assert health.is_stalled(5, 31.0) and not health.is_stalled(5, 10.0) and not health.is_stalled(0, 999.0)


def test_subject_layout_org_tokens() -> None:
    assert org_of_subject(topology.telemetry_subject("o1", "e1")) == "o1"
    assert org_of_subject(topology.event_subject("isr", "o2", "e1")) == "o2"
    assert org_of_subject(topology.command_ack_subject("o3", "e1")) == "o3"
    assert org_of_subject(topology.entity_lifecycle_subject("o4", "created")) == "o4"
    assert org_of_subject(topology.dlq_subject("X")) is None
    assert org_of_subject(topology.video_subject("e1")) is None
    sees = visibility(frozenset({"o1"}))
    assert sees(topology.telemetry_subject("o1", "e")) and not sees(topology.telemetry_subject("o2", "e"))
    assert not sees(topology.dlq_subject("X")) and visibility(None)(topology.dlq_subject("X"))
    assert subject_matches("a.*.c", "a.b.c") and subject_matches("a.>", "a.b.c") and not subject_matches("a.>", "a")
    tree = subject_tree({"a.b.c": 2, "a.b.d": 3, "a.x": 1})
    assert [(n.path, n.count) for n in tree] == [("a", 6), ("a.b", 5), ("a.b.c", 2), ("a.b.d", 3), ("a.x", 1)]


# ---------------------------------------------------------------- fixtures
async def _browse_stream(runtime: Runtime, n: int = 300) -> datetime:
    """``BROWSE`` with ``n`` messages on two subjects; returns the time just before message n/2 + 1."""
    await runtime.js.add_stream(StreamConfig(name="BROWSE", subjects=["browse.>"], allow_direct=True))
    middle = datetime.now(UTC)
    for i in range(1, n + 1):
        if i == n // 2 + 1:
            # Message n/2 was stamped by the server before its ack came back, and message n/2 + 1 is stamped
            # after this publish starts: one clock (this machine's) orders the three, with a round trip between.
            middle = datetime.now(UTC)
        await runtime.js.publish("browse.a" if i % 2 else "browse.b", f'{{"i": {i}}}'.encode())
    return middle


# ---------------------------------------------------------------- streams and consumers
async def test_stream_list_detail_and_subject_counts(runtime: Runtime, client: httpx.AsyncClient) -> None:
    await _browse_stream(runtime, 30)
    page = await client.get("/nats/streams")
    assert page.status_code == 200
    for name in ("BROWSE", topology.STREAM_TELEMETRY, topology.STREAM_COMMANDS):
        assert name in page.text
    detail = await runtime.services.nats_streams.stream("BROWSE", None)
    assert detail.row.messages == 30 and detail.row.first_seq == 1 and detail.row.last_seq == 30
    counts = {n.path: n.count for n in detail.subjects}
    assert counts == {"browse": 30, "browse.a": 15, "browse.b": 15}
    html_page = await client.get("/nats/streams/BROWSE")
    assert html_page.status_code == 200 and "browse.a" in html_page.text and "Purge" in html_page.text
    assert (await client.get("/nats/streams/NOPE")).status_code == 404
    assert (await client.get("/nats/streams/bad.name")).status_code in (400, 404)


async def test_rate_needs_two_samples(runtime: Runtime) -> None:
    await _browse_stream(runtime, 10)
    console = runtime.services.nats_streams
    rows = {r.name: r for r in await console.streams()}
    assert rows["BROWSE"].rate is None
    for _ in range(22):
        await runtime.js.publish("browse.a", b"{}")

    async def rate() -> float | None:
        return {r.name: r for r in await console.streams()}["BROWSE"].rate

    # A rate once two samples are at least a second apart: 22 messages over just over a second.
    measured = await eventually(rate, timeout=5, what="a rate")
    assert 10 < measured < 25


async def test_consumers_pages_show_health(runtime: Runtime, client: httpx.AsyncClient) -> None:
    page = await client.get("/nats/consumers")
    assert page.status_code == 200
    assert topology.CONSUMER_TELEMETRY in page.text and "healthy" in page.text
    one = await client.get(f"/nats/consumers/{topology.STREAM_TELEMETRY}/{topology.CONSUMER_TELEMETRY}")
    assert one.status_code == 200 and "processing rate" in one.text and "max_ack_pending" in one.text
    assert (await client.get(f"/nats/consumers/{topology.STREAM_TELEMETRY}/nope")).status_code == 404


async def test_purge_dry_run_then_by_subject_admin_only(
    runtime: Runtime, client: httpx.AsyncClient, viewer: httpx.AsyncClient
) -> None:
    await _browse_stream(runtime, 40)
    preview = await client.get("/nats/streams/BROWSE/purge", params={"subject": "browse.a"})
    assert preview.status_code == 200 and 'id="purge-count">20<' in preview.text
    assert (await runtime.services.nats_streams.info("BROWSE"))["state"]["messages"] == 40  # a dry run purges nothing
    # Viewers see no purge controls and are refused when calling them directly.
    vpage = await viewer.get("/nats/streams/BROWSE")
    assert vpage.status_code == 200 and "nats-purge" not in vpage.text and "Dry run" not in vpage.text
    assert (await viewer.get("/nats/streams/BROWSE/purge")).status_code == 403
    assert (await viewer.post("/nats/streams/BROWSE/purge", data={"subject": "browse.a"})).status_code == 403
    assert (await runtime.services.nats_streams.info("BROWSE"))["state"]["messages"] == 40
    done = await client.post("/nats/streams/BROWSE/purge", data={"subject": "browse.a"})
    assert done.status_code == 303 and done.headers["location"].endswith("purged=20")
    state = (await runtime.services.nats_streams.info("BROWSE"))["state"]
    assert state["messages"] == 20
    assert await runtime.services.nats_streams.subject_counts("BROWSE") == {"browse.b": 20}
    rows = await audit_db.query_audit(runtime.db, action="nats.stream.purge")
    assert rows and rows[0].target == "BROWSE" and "purged=20" in rows[0].detail
    assert (await client.get("/nats/streams/BROWSE/purge", params={"subject": "bad subject"})).status_code == 422
    all_done = await client.post("/nats/streams/BROWSE/purge", data={})
    assert all_done.headers["location"].endswith("purged=20")


# ---------------------------------------------------------------- message browser
async def test_paging_by_sequence_and_time(runtime: Runtime, client: httpx.AsyncClient) -> None:
    middle = await _browse_stream(runtime, 300)
    console = runtime.services.nats_streams
    row = await console.row("BROWSE")
    reader = console.reader(row)
    every = visibility(None)
    bounds = (row.first_seq, row.last_seq)
    first = await page_forward(reader, 1, bounds, ">", every)
    assert (
        [m.seq for m in first.messages] == list(range(1, 26)) and first.newer_from == 26 and first.older_before is None
    )
    nxt = await page_forward(reader, first.newer_from or 0, bounds, ">", every)
    assert [m.seq for m in nxt.messages] == list(range(26, 51))
    back = await page_backward(reader, 26, bounds, ">", every)
    assert [m.seq for m in back.messages] == list(range(1, 26))
    end = await page_backward(reader, 301, bounds, ">", every)
    assert [m.seq for m in end.messages] == list(range(276, 301)) and end.newer_from is None
    only_b = await page_backward(reader, 301, bounds, "browse.b", every)
    assert [m.seq for m in only_b.messages] == list(range(252, 301, 2))
    assert await reader.seq_at_time(middle, ">", row.last_seq) == 151
    assert await reader.seq_at_time(datetime(2999, 1, 1, tzinfo=UTC), ">", row.last_seq) == 301
    by_time = await client.get(
        "/nats/messages", params={"stream": "BROWSE", "time": middle.isoformat().replace("+00:00", "Z")}
    )
    assert by_time.status_code == 200 and '/nats/messages/BROWSE/151"' in by_time.text
    assert '/nats/messages/BROWSE/150"' not in by_time.text
    by_seq = await client.get("/nats/messages", params={"stream": "BROWSE", "seq": 100, "subject": "browse.*"})
    assert '/nats/messages/BROWSE/124"' in by_seq.text and "seq=125" in by_seq.text
    prev = await client.get("/nats/messages", params={"stream": "BROWSE", "seq": 100, "dir": "prev"})
    assert '/nats/messages/BROWSE/99"' in prev.text and '/nats/messages/BROWSE/100"' not in prev.text
    assert (await client.get("/nats/messages", params={"stream": "BROWSE", "time": "yesterday"})).status_code == 422
    assert (await client.get("/nats/messages", params={"stream": "BROWSE", "subject": "a..b"})).status_code == 422
    picker = await client.get("/nats/messages")
    assert picker.status_code == 200 and "BROWSE" in picker.text


async def test_empty_and_work_queue_streams_browse_without_consumers(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await runtime.js.add_stream(StreamConfig(name="EMPTY", subjects=["empty.>"]))
    empty = await client.get("/nats/messages", params={"stream": "EMPTY"})
    assert empty.status_code == 200 and "This stream is empty." in empty.text
    assert (await client.get("/nats/messages", params={"stream": "EMPTY", "from": "end"})).status_code == 200
    assert (await client.get("/nats/messages/EMPTY/1")).status_code == 404
    await runtime.js.add_stream(
        StreamConfig(name="WORK", subjects=["work.>"], retention=RetentionPolicy.WORK_QUEUE, allow_direct=False)
    )
    for i in range(5):
        await runtime.js.publish(f"work.job{i}", b"job")
    for params in ({"stream": "WORK"}, {"stream": "WORK", "from": "end"}, {"stream": "WORK", "subject": "work.job3"}):
        page = await client.get("/nats/messages", params=params)
        assert page.status_code == 200 and "/nats/messages/WORK/4" in page.text or "work.job3" in page.text
    assert (await client.get("/nats/messages/WORK/3")).status_code == 200
    assert (await client.get("/nats/streams/WORK")).status_code == 200
    assert (await runtime.services.nats_streams.info("WORK"))["state"]["consumer_count"] == 0
    assert (await runtime.services.nats_streams.info("WORK"))["state"]["messages"] == 5


async def test_binary_large_and_hostile_payloads(runtime: Runtime, client: httpx.AsyncClient) -> None:
    await runtime.js.add_stream(StreamConfig(name="ODD", subjects=["odd.>"], max_msg_size=1024 * 1024))
    await runtime.js.publish("odd.bin", b"\xff\xfe\x00\x01binary")
    await runtime.js.publish("odd.big", b"x" * 200_000)
    await runtime.js.publish("odd.xss", b"<script>alert(1)</script>", headers={"X-Test": "<b>h</b>"})
    await runtime.js.publish("odd.json", b'{"b": 1, "a": [1, 2]}')
    listing = await client.get("/nats/messages", params={"stream": "ODD"})
    assert "<script>alert(1)" not in listing.text and html.escape("<script>alert(1)</script>") in listing.text
    assert "ff fe 00 01" in listing.text
    binary = await client.get("/nats/messages/ODD/1")
    assert "00000000  ff fe 00 01 62 69 6e 61" in binary.text and "(hex)" in binary.text
    big = await client.get("/nats/messages/ODD/2")
    assert 'id="message-truncated"' in big.text and "of 200000 bytes" in big.text and len(big.text) < 120_000
    xss = await client.get("/nats/messages/ODD/3")
    assert "<script>alert" not in xss.text and "&lt;b&gt;h&lt;/b&gt;" in xss.text
    pretty = await client.get("/nats/messages/ODD/4")
    assert "&#34;b&#34;: 1," in pretty.text or "&quot;b&quot;: 1," in pretty.text
    assert 'data-copy="#message-body"' in pretty.text


async def test_org_scoped_callers_see_only_their_subjects(
    runtime: Runtime, client: httpx.AsyncClient, org1_viewer: httpx.AsyncClient
) -> None:
    stream = topology.STREAM_COMMANDS
    before = (await runtime.services.nats_streams.info(stream))["state"]["last_seq"]
    for org in ("org1", "org2", "org1"):
        await runtime.js.publish(topology.command_ack_subject(org, "e1"), b'{"status": "accepted"}')
    await runtime.js.publish(topology.dlq_subject("X"), b"{}")
    seqs = {"org1": [before + 1, before + 3], "org2": [before + 2]}
    own = await org1_viewer.get("/nats/messages", params={"stream": stream, "seq": before + 1})
    assert own.status_code == 200
    for s in seqs["org1"]:
        assert f'/nats/messages/{stream}/{s}"' in own.text
    assert f'/nats/messages/{stream}/{seqs["org2"][0]}"' not in own.text and "org2" not in own.text
    assert (await org1_viewer.get(f"/nats/messages/{stream}/{seqs['org1'][0]}")).status_code == 200
    assert (await org1_viewer.get(f"/nats/messages/{stream}/{seqs['org2'][0]}")).status_code == 404
    admin = await client.get("/nats/messages", params={"stream": stream, "seq": before + 1})
    assert f'/nats/messages/{stream}/{seqs["org2"][0]}"' in admin.text
    dlq = await org1_viewer.get("/nats/messages", params={"stream": topology.STREAM_DLQ, "from": "end"})
    assert dlq.status_code == 200 and "constellation.dlq.X" not in dlq.text
    tree = await org1_viewer.get(f"/nats/streams/{stream}")
    assert "org1" in tree.text and "org2" not in tree.text and "hidden" in tree.text


# ---------------------------------------------------------------- live tail and server view
async def _read_events(url: str, headers: dict[str, str], events: list[tuple[str, str]]) -> None:
    """Append ``(event, data)`` pairs from an SSE stream until cancelled."""
    name = ""
    async with httpx.AsyncClient(timeout=60) as http, http.stream("GET", url, headers=headers) as resp:
        assert resp.status_code == 200
        async for line in resp.aiter_lines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:") and name:
                events.append((name, line[5:].strip()))
                name = ""


async def test_tail_streams_new_messages_with_rate_cap_and_org_filter(
    runtime: Runtime, live_server: LiveServer
) -> None:
    key = await runtime.services.apikeys.create("tests", "tail", ["read"], "org1")
    headers = {"Authorization": f"Bearer {key.key}"}
    url = f"{live_server.url}/events/nats-tail?stream={topology.STREAM_COMMANDS}"
    events: list[tuple[str, str]] = []
    reader = asyncio.create_task(_read_events(url, headers, events))
    await eventually(lambda: any(n == "nats-tail-status" for n, _ in events), what="the first status")
    assert runtime.nc is not None
    await runtime.nc.publish(topology.command_ack_subject("org2", "e9"), b"other org")
    for i in range(100):  # a burst: 20 pass, the rest are counted as skipped
        await runtime.nc.publish(topology.command_ack_subject("org1", "e1"), f"burst {i}".encode())
    await runtime.nc.flush()

    def accounted() -> bool:
        # A status that counts all 100 of org1's messages, shown or skipped, comes after every row it counts.
        counts = [re.search(r"(\d+) shown · (\d+) skipped", d) for n, d in events if n == "nats-tail-status"]
        return any(m and int(m[1]) + int(m[2]) == 100 for m in counts)

    await eventually(accounted, timeout=10, what="a status counting the whole burst")
    reader.cancel()
    rows = [d for n, d in events if n == "nats-tail-row"]
    assert rows and all("org2" not in d for d in rows)
    assert 15 <= len(rows) <= 40  # the bucket's 20, plus what refilled while the burst was arriving
    statuses = [d for n, d in events if n == "nats-tail-status"]
    assert any("skipped" in s and " 0 skipped" not in s for s in statuses[1:]), statuses


async def test_server_view(runtime: Runtime, client: httpx.AsyncClient, viewer: httpx.AsyncClient) -> None:
    await client.get("/nats/server")
    page = await viewer.get("/nats/server")
    assert page.status_code == 200
    for text in ("JetStream usage", "storage", "memory", "streams", "consumers", "Disk free", "in msgs", "2."):
        assert text in page.text, text
