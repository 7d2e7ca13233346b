"""The NATS console's key-value browser: buckets, keys with filters, values, history and
diffs, the live watch, admin put/delete with confirmation and audit, and per-organisation
visibility. Against a real nats-server and the real app (no mocks).
"""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import msgspec
import pytest
from nats.js.api import KeyValueConfig

from app.runtime import Runtime
from core import topology
from db import audit as audit_db
from services.nats_console.values import format_value, line_diff
from tests.conftest import LiveServer
from tests.helpers import eventually, seed

STATE = topology.BUCKET_STATE
REGISTRY = topology.BUCKET_REGISTRY


# ---------------------------------------------------------------- pure functions
def test_value_formatting_and_line_diff() -> None:
    pretty = format_value(b'{"b": 1, "a": "<x>"}')
    assert pretty.kind == "json" and pretty.body == '{\n  "a": "<x>",\n  "b": 1\n}'
    binary = format_value(bytes(range(256)) * 40)
    assert binary.kind == "binary" and binary.body.startswith("00000000  00 01 02") and binary.truncated
    big = format_value(b"x" * 100_000)
    assert big.truncated and big.shown_bytes == 64 * 1024 and big.size == 100_000
    assert format_value(None).kind == "empty"
    changed = line_diff(b'{"a": 1, "b": 2}', b'{"a": 1, "b": 3}', "r1", "r2")
    kinds = [(line.kind, line.text.strip()) for line in changed.lines]
    assert ("del", '-  "b": 2') in kinds and ("add", '+  "b": 3') in kinds and not changed.identical
    assert line_diff(b'{"a":1}', b'{ "a" : 1 }', "x", "y").identical  # compared pretty-printed


# ---------------------------------------------------------------- fixtures
async def _two_orgs(runtime: Runtime) -> None:
    """org1 with ent-0/ent-1, org2 with other-0; state values, a dotted sub-key of each org."""
    await seed(runtime, "org1", 2, prefix="ent")
    await seed(runtime, "org2", 1, prefix="other")
    kv = runtime.kv_state
    await kv.put("ent-0", b'{"entity_id": "ent-0", "org_id": "org1", "status": "active"}')
    await kv.put("ent-0.mavlink", b'{"battery_remaining": 71}')
    await kv.put("ent-1", b'{"entity_id": "ent-1", "org_id": "org1"}')
    await kv.put("other-0", b'{"entity_id": "other-0", "org_id": "org2"}')
    await kv.put("other-0.detections.objects", b'{"objects": {}}')


def _key_links(text: str, bucket: str = STATE) -> set[str]:
    """Keys linked from a key list page."""
    return {k.replace("%2E", ".") for k in re.findall(rf'href="/nats/kv/{bucket}/key\?key=([^"]+)"', text)}


# ---------------------------------------------------------------- buckets and keys
async def test_buckets_list_and_key_filters(runtime: Runtime, client: httpx.AsyncClient) -> None:
    await _two_orgs(runtime)
    page = await client.get("/nats/kv")
    assert page.status_code == 200
    assert f'href="/nats/kv/{STATE}"' in page.text and f'href="/nats/kv/{REGISTRY}"' in page.text
    assert "Consolidated EntityState" in page.text  # description; history depth and TTL columns
    assert ">10<" in page.text and ">5<" in page.text

    every = await client.get(f"/nats/kv/{STATE}")
    assert every.status_code == 200
    assert {"ent-0", "ent-0.mavlink", "ent-1", "other-0", "other-0.detections.objects"} <= _key_links(every.text)
    # Wildcards are matched by the server over dotted keys.
    subs = await client.get(f"/nats/kv/{STATE}", params={"filter": "ent-0.*"})
    assert _key_links(subs.text) == {"ent-0.mavlink"}
    deep = await client.get(f"/nats/kv/{STATE}", params={"filter": "other-0.>"})
    assert _key_links(deep.text) == {"other-0.detections.objects"}
    roots = await client.get(f"/nats/kv/{STATE}", params={"filter": "*"})
    assert {"ent-0", "ent-1", "other-0"} <= _key_links(roots.text) and "ent-0.mavlink" not in _key_links(roots.text)
    # A plain word matches keys containing it.
    plain = await client.get(f"/nats/kv/{STATE}", params={"filter": "mavlink"})
    assert _key_links(plain.text) == {"ent-0.mavlink"}
    assert (await client.get(f"/nats/kv/{STATE}", params={"filter": "a.>.b"})).status_code == 422
    assert (await client.get(f"/nats/kv/{STATE}", params={"filter": "a b*"})).status_code == 422
    assert (await client.get("/nats/kv/NO_SUCH_BUCKET")).status_code == 404

    # Deleted keys are listed only on request; an empty bucket is a page, not an error.
    await runtime.kv_state.delete("ent-1")
    assert "ent-1" not in _key_links((await client.get(f"/nats/kv/{STATE}", params={"filter": "*"})).text)
    with_deleted = await client.get(f"/nats/kv/{STATE}", params={"filter": "*", "deleted": "1"})
    assert "ent-1" in _key_links(with_deleted.text) and 'badge-warn">del<' in with_deleted.text
    await runtime.js.create_key_value(KeyValueConfig(bucket="EMPTY_BUCKET", history=3, ttl=3600))
    empty = await client.get("/nats/kv/EMPTY_BUCKET")
    assert empty.status_code == 200 and "No keys" in empty.text
    listed = await client.get("/nats/kv")
    assert "EMPTY_BUCKET" in listed.text and "60 min" in listed.text


async def test_value_view_is_escaped_pretty_hex_and_truncated(runtime: Runtime, client: httpx.AsyncClient) -> None:
    await seed(runtime, "org1", 1, prefix="ent")
    await runtime.kv_state.put("ent-0", b'{"name": "<script>alert(1)</script>", "n": 1}')
    page = await client.get(f"/nats/kv/{STATE}/key", params={"key": "ent-0"})
    assert page.status_code == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and "<script>alert(1)" not in page.text
    assert "&#34;n&#34;: 1" in page.text  # pretty-printed (quotes escaped)
    kv = await runtime.js.create_key_value(KeyValueConfig(bucket="RAW", history=2))
    await kv.put("bin", bytes(range(256)))
    await kv.put("big", b"y" * 200_000)
    binary = await client.get("/nats/kv/RAW/key", params={"key": "bin"})
    assert binary.status_code == 200 and "00000000  00 01 02 03" in binary.text and "binary" in binary.text
    big = await client.get("/nats/kv/RAW/key", params={"key": "big"})
    assert 'id="kv-truncated"' in big.text and "65536 of 200000 bytes" in big.text
    assert (await client.get("/nats/kv/RAW/key", params={"key": "missing"})).status_code == 404
    assert (await client.get("/nats/kv/RAW/key", params={"key": "bad key"})).status_code == 422


async def test_history_and_diff_between_revisions(runtime: Runtime, client: httpx.AsyncClient) -> None:
    await seed(runtime, "org1", 1, prefix="ent")
    kv = runtime.kv_state
    r1 = await kv.put("ent-0.analytics.summary", b'{"count": 1, "label": "a<b"}')
    r2 = await kv.put("ent-0.analytics.summary", b'{"count": 2, "label": "a<b"}')
    r3 = await kv.put("ent-0.analytics.summary", b'{"count": 3, "label": "c&d"}')
    page = await client.get(f"/nats/kv/{STATE}/key", params={"key": "ent-0.analytics.summary"})
    assert page.status_code == 200
    for rev in (r1, r2, r3):
        assert f'name="a" value="{rev}"' in page.text
    # By default: what the latest write changed.
    assert f"Revision {r2} → {r3}" in page.text
    assert '<span class="diff-del">-  &#34;count&#34;: 2,</span>' in page.text or "-  &#34;count&#34;: 2," in page.text
    assert "+  &#34;label&#34;: &#34;c&amp;d&#34;" in page.text  # escaped
    chosen = await client.get(f"/nats/kv/{STATE}/key", params={"key": "ent-0.analytics.summary", "a": r1, "b": r2})
    assert f"Revision {r1} → {r2}" in chosen.text and "+  &#34;count&#34;: 2," in chosen.text
    assert "c&amp;d" not in chosen.text.split('id="nats-kv-diff"')[1]
    same = await client.get(f"/nats/kv/{STATE}/key", params={"key": "ent-0.analytics.summary", "a": r1, "b": r1})
    assert 'id="kv-diff-identical"' in same.text
    gone = await client.get(f"/nats/kv/{STATE}/key", params={"key": "ent-0.analytics.summary", "a": 999, "b": r1})
    assert gone.status_code == 422


# ---------------------------------------------------------------- admin writes
async def test_put_and_delete_admin_only_with_confirmation_and_audit(
    runtime: Runtime, client: httpx.AsyncClient, viewer: httpx.AsyncClient, operator: httpx.AsyncClient
) -> None:
    await seed(runtime, "org1", 1, prefix="ent")
    rev = await runtime.kv_state.put("ent-0.note", b'{"text": "one", "keep": true}')
    url = f"/nats/kv/{STATE}/key"
    for who in (viewer, operator):
        page = await who.get(url, params={"key": "ent-0.note"})
        assert page.status_code == 200 and 'id="kv-edit"' not in page.text and 'id="kv-delete"' not in page.text
        assert (await who.get(f"/nats/kv/{STATE}/edit", params={"key": "ent-0.note"})).status_code == 403
        body = {"key": "ent-0.note", "value": '{"text": "hacked"}', "revision": str(rev), "confirm": "yes"}
        assert (await who.post(f"/nats/kv/{STATE}/put", data=body)).status_code == 403
        assert (await who.post(f"/nats/kv/{STATE}/delete", data=body)).status_code == 403
    assert (await runtime.kv_state.get("ent-0.note")).value == b'{"text": "one", "keep": true}'

    page = await client.get(url, params={"key": "ent-0.note"})
    assert 'id="kv-edit"' in page.text and 'id="kv-delete"' in page.text
    form = await client.get(f"/nats/kv/{STATE}/edit", params={"key": "ent-0.note"})
    assert form.status_code == 200 and f'name="revision" value="{rev}"' in form.text
    new = '{"text": "two <b>", "keep": true}'
    review = await client.post(f"/nats/kv/{STATE}/put", data={"key": "ent-0.note", "value": new, "revision": str(rev)})
    assert review.status_code == 200 and 'id="kv-confirm"' in review.text
    assert "+  &#34;text&#34;: &#34;two &lt;b&gt;&#34;" in review.text  # the diff, escaped
    assert (await runtime.kv_state.get("ent-0.note")).revision == rev  # nothing written yet
    done = await client.post(
        f"/nats/kv/{STATE}/put", data={"key": "ent-0.note", "value": new, "revision": str(rev), "confirm": "yes"}
    )
    assert done.status_code == 303 and done.headers["location"] == f"{url}?key=ent-0.note"
    entry = await runtime.kv_state.get("ent-0.note")
    assert json.loads(entry.value or b"") == {"text": "two <b>", "keep": True} and entry.revision > rev
    assert entry.value == b'{"text":"two <b>","keep":true}'  # valid JSON is stored compact
    rows = await audit_db.query_audit(runtime.db, action="nats.kv.put")
    assert rows and rows[0].target == f"{STATE}/ent-0.note" and rows[0].org_id == "org1"
    assert json.loads(rows[0].diff) == {"text": ["one", "two <b>"]}
    # A write based on a stale revision is refused.
    stale = await client.post(
        f"/nats/kv/{STATE}/put", data={"key": "ent-0.note", "value": "{}", "revision": str(rev), "confirm": "yes"}
    )
    assert stale.status_code == 409
    # Delete: confirm page first, then a delete marker (history kept), audited.
    current = entry.revision or 0
    stale_delete = await client.post(
        f"/nats/kv/{STATE}/delete", data={"key": "ent-0.note", "revision": str(rev), "confirm": "yes"}
    )
    assert stale_delete.status_code == 409 and "changed since revision" in stale_delete.text
    confirm = await client.post(f"/nats/kv/{STATE}/delete", data={"key": "ent-0.note", "revision": str(current)})
    assert confirm.status_code == 200 and 'id="kv-confirm"' in confirm.text
    assert (await runtime.kv_state.get("ent-0.note")).revision == current
    deleted = await client.post(
        f"/nats/kv/{STATE}/delete", data={"key": "ent-0.note", "revision": str(current), "confirm": "yes"}
    )
    assert deleted.status_code == 303
    after = await client.get(url, params={"key": "ent-0.note"})
    assert 'id="kv-deleted"' in after.text and 'id="kv-delete"' not in after.text
    rows = await audit_db.query_audit(runtime.db, action="nats.kv.delete")
    assert rows and json.loads(rows[0].diff) == {"keep": [True, None], "text": ["two <b>", None]}
    # A new key through the form.
    created = await client.post(
        f"/nats/kv/{STATE}/put", data={"key": "ent-0.fresh", "value": "plain text", "revision": "0", "confirm": "yes"}
    )
    assert created.status_code == 303 and (await runtime.kv_state.get("ent-0.fresh")).value == b"plain text"
    bad = await client.post(f"/nats/kv/{STATE}/put", data={"key": ".bad", "value": "x", "revision": "0"})
    assert bad.status_code == 422


# ---------------------------------------------------------------- organisations
async def test_callers_of_some_organisations_see_only_their_keys(
    runtime: Runtime, org1_viewer: httpx.AsyncClient, org1_admin: httpx.AsyncClient
) -> None:
    await _two_orgs(runtime)
    page = await org1_viewer.get(f"/nats/kv/{STATE}")
    keys = _key_links(page.text)
    assert {"ent-0", "ent-0.mavlink", "ent-1"} <= keys
    assert not {k for k in keys if k.startswith("other-0")} and "other-0" not in page.text
    assert "of other organisations not shown" in page.text
    assert (await org1_viewer.get(f"/nats/kv/{STATE}/key", params={"key": "ent-0.mavlink"})).status_code == 200
    assert (await org1_viewer.get(f"/nats/kv/{STATE}/key", params={"key": "other-0"})).status_code == 404
    hidden = await org1_viewer.get(f"/nats/kv/{STATE}/key", params={"key": "other-0.detections.objects"})
    assert hidden.status_code == 404
    registry = _key_links((await org1_viewer.get(f"/nats/kv/{REGISTRY}")).text, REGISTRY)
    assert {"org.org1", "entity.ent-0", "entity.ent-1"} <= registry
    assert "org.org2" not in registry and "entity.other-0" not in registry
    kv = await runtime.js.create_key_value(KeyValueConfig(bucket="FOREIGN"))
    await kv.put("anything", b"1")
    assert not _key_links((await org1_viewer.get("/nats/kv/FOREIGN")).text, "FOREIGN")
    # An organisation's admin writes its keys only.
    mine = await org1_admin.get(f"/nats/kv/{STATE}/key", params={"key": "ent-0"})
    assert 'id="kv-edit"' in mine.text
    rev = (await runtime.kv_state.get("other-0")).revision
    body = {"key": "other-0", "value": "{}", "revision": str(rev), "confirm": "yes"}
    assert (await org1_admin.post(f"/nats/kv/{STATE}/put", data=body)).status_code == 403
    assert (await org1_admin.post("/nats/kv/FOREIGN/put", data={**body, "key": "anything"})).status_code == 403
    denied = await audit_db.query_audit(runtime.db, action="auth.denied")
    assert any("org2" in (r.detail or "") for r in denied)


# ---------------------------------------------------------------- live watch
async def _read_events(url: str, headers: dict[str, str], events: list[tuple[str, str]]) -> None:
    """Append ``(event, data)`` pairs from an SSE stream until cancelled."""
    name = ""
    data: list[str] = []
    async with httpx.AsyncClient(timeout=60) as http, http.stream("GET", url, headers=headers) as resp:
        assert resp.status_code == 200
        async for line in resp.aiter_lines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif not line and name:
                events.append((name, "\n".join(data)))
                name, data = "", []


@pytest.mark.timeout(60)
async def test_live_watch_of_a_key_and_of_the_bucket(runtime: Runtime, live_server: LiveServer, admin_key: str) -> None:
    await seed(runtime, "org1", 1, prefix="ent")
    await runtime.kv_state.put("ent-0.watch", b'{"v": "first"}')
    headers = {"Authorization": f"Bearer {admin_key}"}
    key_events: list[tuple[str, str]] = []
    bucket_events: list[tuple[str, str]] = []
    base = f"{live_server.url}/events/nats-kv?bucket={STATE}"
    readers = [
        asyncio.create_task(_read_events(f"{base}&key=ent-0.watch", headers, key_events)),
        asyncio.create_task(_read_events(base, headers, bucket_events)),
    ]
    try:
        await eventually(lambda: any(n == "nats-kv-value" for n, _ in key_events), 10, what="key resync")
        await eventually(lambda: any(n == "nats-kv-changes" for n, _ in bucket_events), 10, what="bucket resync")
        assert any("first" in d for n, d in key_events if n == "nats-kv-value")
        assert any(n == "nats-kv-history" for n, _ in key_events)
        await runtime.kv_state.put("ent-0.watch", msgspec.json.encode({"v": "second <i>"}))
        await eventually(
            lambda: any("second &lt;i&gt;" in d for n, d in key_events if n == "nats-kv-value"), 10, what="live value"
        )
        await eventually(
            lambda: any("ent-0" in d for n, d in bucket_events if n == "nats-kv-changes"), 10, what="bucket change"
        )
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    await eventually(lambda: runtime.hub.client_count == 0, 5, what="streams unsubscribed")
    async with httpx.AsyncClient(timeout=10) as http:
        refused = await http.get(f"{live_server.url}/events/nats-kv?bucket=FOREIGN", headers=headers)
        assert refused.status_code == 422
