"""Issue 11, finding 3: ids planted by a device can never steer a click to another action.

A device (its own NKey credential, over real NATS) publishes alert codes, track ids,
subjects and KV keys full of ``/ .. ? # %``; an alert id like that (as stored before ids
were validated) is planted too. An admin then clicks every action on every page that
shows them in Debian's Chromium: acknowledge on the alerts page, replay and discard on
the dead-letter pages, every link of the message browser and the KV browser. Only the
clicked action happens: no stream is purged, the dead-letter queue keeps what was not
selected, and the audit log shows no other action.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, urlsplit

import msgspec
import nats
import pytest

from app.runtime import Runtime
from core import topology
from db import alerts as alerts_db
from db import audit as audit_db
from services.nats_auth import inbox_prefix
from tests.browser.conftest import open_page, sign_in
from tests.conftest import LiveServer
from tests.helpers import dlq, eventually, seed, telemetry
from workers import base

pytestmark = [pytest.mark.browser, pytest.mark.slow]
PASSWORD = "browser test password"
ORG = "orga"
PURGE = "x/../../nats/streams/CONSTELLATION_DLQ/purge?"
HOSTILE = [PURGE, "a?b#c%d", "..", "%2e%2e", "a%2Fb", "q&r=s", "x:y"]
STATE = topology.BUCKET_STATE
KV_KEY = re.compile(r"^[-/_=.a-zA-Z0-9]+$")  # what NATS KV clients accept as a key


def _alert(code: str) -> bytes:
    return msgspec.json.encode({"event_type": "alert", "severity": "high", "code": code, "message": f"code {code}"})


def _detection(entity: str, track_id: str, threat: str = "HIGH_THREAT") -> bytes:
    return msgspec.json.encode(
        {
            "timestamp": "2026-01-01T00:00:00Z",
            "event_type": "detection",
            "entity_id": entity,
            "org_id": ORG,
            "detection": {
                "track_id": track_id,
                "model_type": "m",
                "label": "person",
                "confidence": 0.9,
                "bbox": {"x_min": 0.1, "y_min": 0.1, "x_max": 0.2, "y_max": 0.2},
                "timestamp": "2026-01-01T00:00:00Z",
                "metadata": {"threat_level": threat},
            },
        }
    )


async def _device_plants(rt: Runtime, entity: str) -> int:
    """Publish hostile ids as the organisation's device; return how many must be dead-lettered."""
    key = await rt.services.apikeys.create("tests", "device", ["read"], ORG, nats=True)
    assert rt.services.nats_auth is not None and rt.nats_server is not None and key.nats_seed
    await rt.services.nats_auth.apply()
    nc = await nats.connect(
        rt.nats_server.url, nkeys_seed_str=key.nats_seed, inbox_prefix=inbox_prefix(key.key_id), allow_reconnect=False
    )
    js = nc.jetstream(timeout=5)
    rejected = 0
    try:
        for hostile in HOSTILE:
            await js.publish(topology.event_subject("device", ORG, entity), _alert(hostile))
            await js.publish(topology.detection_subject(ORG, entity), _detection(entity, hostile))
            rejected += 2
            if "." not in hostile:  # one odd subject token (a '.' would only add tokens)
                await js.publish(f"{topology.PREFIX}.telemetry.{ORG}.{hostile}", telemetry())
                rejected += 1
        # Valid ones, so the alerts page has Acknowledge buttons (one id holds ':' twice).
        await js.publish(topology.event_subject("device", ORG, entity), _alert("LOW_FUEL"))
        await js.publish(topology.detection_subject(ORG, entity), _detection(entity, "t1"))
        # KV sub-keys of its own entity with '/' and '=' (valid KV key characters) and, by a raw
        # publish, with '?', '#' and '%'.
        for suffix in ("hostile/x=y", "q?r#s%t", "a%2Fb"):
            await js.publish(f"$KV.{STATE}.{entity}.{suffix}", b'{"planted": true}')
        await nc.flush()
    finally:
        await nc.close()
    return rejected


async def _stream_counts(rt: Runtime) -> dict[str, int]:
    return {
        name: (await rt.js.stream_info(name)).state.messages
        for name in [s.config.name or "" for s in topology.STREAMS] + [topology.kv_stream(STATE)]
    }


def _hrefs(html: str, prefix: str) -> list[str]:
    return sorted({h.replace("&amp;", "&") for h in re.findall(r'href="(' + re.escape(prefix) + r'[^"]*)"', html)})


@pytest.mark.timeout(150)
async def test_hostile_ids_cannot_steer_a_click(browser: Any, make_runtime: Any) -> None:
    rt: Runtime = await make_runtime(nats_url="", nats_port=-1)
    (entity,) = await seed(rt, org_id=ORG, entities=1, prefix="a")
    await rt.js.publish(topology.telemetry_subject(ORG, entity), telemetry())
    rejected = await _device_plants(rt, entity)
    dead = await eventually(lambda: _at_least(rt, rejected), timeout=20, what="hostile ids dead-lettered")
    reasons = " | ".join((m.headers or {}).get(base.DLQ_REASON, "") for m in dead)
    assert "invalid alert code" in reasons and "invalid track_id" in reasons and "invalid subject tokens" in reasons
    await eventually(lambda: _alert_ids(rt, 2), what="the valid device and threat alerts")
    # Alert ids as stored before ids were validated: the page must still encode them.
    for hostile in HOSTILE:
        await rt.services.alerts.raise_alert(
            f"device:{entity}:{hostile}", kind="device", severity="high", title=hostile, reason="planted", org_id=ORG
        )
    await rt.services.users.create("tests", "admin@example.com", "admin", [], PASSWORD)
    before = await _stream_counts(rt)
    dlq_before = {m.seq for m in await dlq(rt.js)}

    server = LiveServer(rt)
    await server.start()
    context, page, log = await open_page(browser)
    failures: list[str] = []
    posts: list[str] = []
    page.on("response", lambda r: failures.append(f"{r.status} {r.url}") if r.status >= 500 else None)
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    try:
        base_url = server.url
        await sign_in(page, base_url, "admin@example.com", PASSWORD)
        posts.clear()

        # 1. Acknowledge every alert on the alerts page, by clicking its button.
        await page.goto(base_url + "/alerts?status=all")
        actions = await page.eval_on_selector_all("form[hx-post]", "fs => fs.map(f => f.getAttribute('action'))")
        assert len(actions) == len(HOSTILE) + 2, actions
        for action in actions:
            assert action.count("/") == 3 and action.startswith("/alerts/") and action.endswith("/ack"), action
            async with page.expect_response(lambda r, a=action: r.request.method == "POST" and a in r.url) as info:
                await page.locator(f'form[action="{action}"] button').click()
            response = await info.value
            alert_id = unquote(action.split("/")[2])
            if "/" in alert_id:
                # A '/' inside the id cannot reach the route (the server decodes the path first),
                # so the click addresses no alert: nothing happens, and it says so.
                assert response.status == 404, (action, response.status)
            else:
                assert response.status == 200, (action, response.status)
                row = await alerts_db.get_alert(rt.db, alert_id)
                assert row is not None and row.acknowledged_at, alert_id
        assert all(urlsplit(u).path.startswith("/alerts/") for u in posts), posts
        assert {m.seq for m in await dlq(rt.js)} == dlq_before, "the dead-letter queue is untouched"
        now = await _stream_counts(rt)
        assert all(now[name] >= count for name, count in before.items()), ("no stream lost a message", before, now)

        # 2. The message browser: every message link of every stream, and the subject tree's links.
        for stream in [s.config.name or "" for s in topology.STREAMS]:
            await page.goto(f"{base_url}/nats/streams/{stream}")
            tree = _hrefs(await page.content(), "/nats/messages?")
            await page.goto(f"{base_url}/nats/messages?stream={stream}&from=start")
            messages = _hrefs(await page.content(), f"/nats/messages/{stream}/")
            for href in tree + messages:
                assert await _follow(page, base_url + href) == 200, href
            if messages:  # and one real click per stream
                await _click_link(page, messages[-1])

        # 3. The KV browser: every key link of the state bucket, each key's links.
        await page.goto(f"{base_url}/nats/kv/{STATE}")
        keys = _hrefs(await page.content(), f"/nats/kv/{STATE}/key?")
        assert any("hostile%2Fx%3Dy" in k for k in keys), keys
        await _click_link(page, next(k for k in keys if "hostile" in k))
        for href in keys:
            status = await _follow(page, base_url + href)
            # Keys a raw publish made outside the KV key alphabet are refused by the key page (4xx).
            want_ok = bool(KV_KEY.match(unquote(href.split("key=", 1)[1])))
            assert status == 200 if want_ok else 400 <= status < 500, (href, status)
            if want_ok:
                page_html = await (await page.request.get(base_url + href)).text()
                for link in _hrefs(page_html, f"/nats/kv/{STATE}/"):
                    assert await _follow(page, base_url + link) < 500, link

        # 4. Dead letters: open each, then replay all but one and discard that one, by clicking.
        await page.goto(base_url + "/nats/dlq")
        letters = _hrefs(await page.content(), "/nats/dlq/")
        assert len(letters) >= rejected, letters
        for href in letters:
            assert await _follow(page, base_url + href) == 200, href
        await _click_link(page, letters[0])
        await page.goto(base_url + "/nats/dlq")
        boxes = page.locator("#nats-dlq-table input[name=seq]")
        seqs = [int(v) for v in await boxes.evaluate_all("bs => bs.map(b => b.value)")]
        keep, discard, replay = seqs[0], seqs[1], seqs[2:]
        for seq in replay:
            await page.locator(f"#dlq-{seq} input[name=seq]").check()
        await page.click("#dlq-replay-selected")
        await page.wait_for_selector("#dlq-result")
        await page.locator(f"#dlq-{discard} input[name=seq]").check()
        await page.click("#dlq-discard-selected")
        await page.click("#dlq-discard-confirm")
        await page.wait_for_selector("#dlq-result")
        remaining = {m.seq for m in await dlq(rt.js)}
        assert keep in remaining and discard not in remaining and not remaining & set(replay)

        # Only what was clicked happened.
        assert not failures, failures
        actions_done = {row.action for row in await audit_db.query_audit(rt.db, limit=1000)}
        assert not {a for a in actions_done if a.startswith(("nats.stream", "nats.kv", "apikey.revoke", "user."))} - {
            "user.create"
        }, actions_done
        discards = await audit_db.query_audit(rt.db, action="nats.dlq.discard", limit=100)
        assert [r.target.split(":")[0] for r in discards] == [str(discard)]
        replays = await audit_db.query_audit(rt.db, action="nats.dlq.replay", limit=1000)
        assert sorted(int(r.target.split(":")[0]) for r in replays) == sorted(replay)
        after = await _stream_counts(rt)
        assert all(after[name] >= before[name] for name in before if name != topology.STREAM_DLQ), (before, after)
        assert all(urlsplit(u).path.startswith(("/alerts/", "/nats/dlq/")) for u in posts), posts
    finally:
        await context.close()
        await server.stop()


async def _follow(page: Any, url: str) -> int:
    """GET a link the page shows, with the page's session (quicker than navigating to each)."""
    response = await page.request.get(url, max_redirects=0)
    return int(response.status)


async def _click_link(page: Any, href: str) -> None:
    """Click the link to ``href`` on the current page; the page it opens must load (no 5xx)."""
    # Boosted links load through htmx (no document navigation): wait for the response itself.
    async with page.expect_response(lambda r: r.request.method == "GET" and r.url.endswith(href)) as info:
        await page.locator(f'a[href="{href}"]').first.click()
    response = await info.value
    assert response.status < 500, (href, response.status)


async def _at_least(rt: Runtime, n: int) -> list[Any] | None:
    dead = await dlq(rt.js)
    return dead if len(dead) >= n else None


async def _alert_ids(rt: Runtime, n: int) -> bool:
    return len(await alerts_db.list_alerts(rt.db, limit=100)) >= n
