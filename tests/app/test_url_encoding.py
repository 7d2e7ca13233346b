"""Issue 11, finding 3: every id, key, subject or name a template puts into a URL is encoded.

A lint over every template (each ``{{ … }}`` inside a URL attribute or the page's stream
URL goes through ``urlseg``), the filter itself, and the round trip: an encoded id with
``:`` reaches its route and acts on exactly that id.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import httpx
from bs4 import BeautifulSoup

from app.runtime import Runtime
from db import alerts as alerts_db
from web.templating import TEMPLATES_DIR, build_environment, safe_link, urlseg

URL_ATTRS = (
    r"href|action|hx-(?:post|get|delete|put|patch)|src|sse-connect|formaction"
    r"|data-[a-z-]*(?:src|url|href|stream)[a-z-]*"  # URLs that scripts load (data-frame-src, data-stream)
)
ATTR = re.compile(r"(?P<attr>(?<![\w-])(?:" + URL_ATTRS + r')|\{% endif %\})="(?P<value>[^"]*)"')
STREAM_BLOCK = re.compile(r"\{% block stream %\}(.*?)\{% endblock %\}", re.S)
EXPR = re.compile(r"\{\{\s*(.*?)\s*\}\}")
# Expressions that are whole URLs built (and encoded) in Python, or plain arithmetic.
BUILT = {"href", "toast.href", "query", "page - 1", "page + 1", "stream or '/events/nav'", "url|safe_link"}
HOSTILE = ["x/../../nats/streams/CONSTELLATION_DLQ/purge?", "a?b#c%d", "..", "%2e%2e", "q&r=s", "a b\"'<>"]


def _unencoded(value: str) -> list[str]:
    return [
        e
        for e in EXPR.findall(value)
        if not e.endswith("|urlseg") and e not in BUILT and not e.startswith("static_url(")
    ]


def test_every_template_url_expression_is_encoded() -> None:
    offenders: list[str] = []
    files = sorted(Path(TEMPLATES_DIR).rglob("*.html"))
    assert len(files) > 50
    for path in files:
        text = path.read_text()
        for m in ATTR.finditer(text):
            if m["attr"] == "{% endif %}" and not m["value"].startswith("/"):
                continue
            offenders += [f"{path.name}: {m['attr']}={e!r}" for e in _unencoded(m["value"])]
        for block in STREAM_BLOCK.findall(text):
            offenders += [f"{path.name}: stream {e!r}" for e in _unencoded(block)]
    assert not offenders, "\n".join(offenders)


def test_urlseg_leaves_one_opaque_segment() -> None:
    for value in HOSTILE + ["device:ent-0:LOW_FUEL", "\ud800"]:
        encoded = urlseg(value)
        assert re.fullmatch(r"[A-Za-z0-9_.~%-]*", encoded), encoded
        assert encoded.lower() not in (".", "%2e", "..", "%2e%2e", ".%2e", "%2e.")  # never a dot segment
        if value not in ("\ud800", ".."):
            assert unquote(encoded) == value
    assert urlseg(42) == "42"
    assert safe_link("https://cam.example/stream") == "https://cam.example/stream"
    assert safe_link("rtsp://10.0.0.5:554/live") == "rtsp://10.0.0.5:554/live"
    for bad in ("javascript:alert(1)", "data:text/html,x", "//evil.example/x", "/relative", "", None):
        assert safe_link(bad) == ""


def test_alert_row_actions_stay_on_their_route() -> None:
    env = build_environment()
    template = env.get_template("partials/alert-row.html")
    for hostile in HOSTILE:
        alert = {
            "alert_id": f"device:ent-0:{hostile}",
            "severity": "high",
            "title": "t",
            "reason": "r",
            "kind": "device",
            "entity_id": "ent-0",
            "status": "active",
            "updated_at": "2026-01-01T00:00:00Z",
            "acknowledged_at": None,
            "acknowledged_by": None,
        }
        html = template.render(a=alert, can_ack=True)
        form = BeautifulSoup(html, "html.parser").select_one("form")
        assert form is not None
        for attr in ("action", "hx-post"):
            url = str(form[attr])
            assert url.startswith("/alerts/") and url.endswith("/ack") and url.count("/") == 3, url
            assert "?" not in url and "#" not in url and "/../" not in url
            assert unquote(url.split("/")[2]) == alert["alert_id"]


async def test_encoded_ids_with_colons_reach_their_route(runtime: Runtime, client: httpx.AsyncClient) -> None:
    alert_id = "device:ent-0:LOW_FUEL"
    await runtime.services.alerts.raise_alert(
        alert_id, kind="device", severity="high", title="fuel", reason="low", org_id="org1"
    )
    r = await client.post(f"/alerts/{urlseg(alert_id)}/ack")
    assert r.status_code == 303, r.text[:300]
    row = await alerts_db.get_alert(runtime.db, alert_id)
    assert row is not None and row.acknowledged_at
    # A hostile id addresses no route and acts on nothing.
    r = await client.post(f"/alerts/{urlseg('x/../../nats/streams/CONSTELLATION_DLQ/purge?')}/ack")
    assert r.status_code == 404


async def test_audit_paging_and_export_links_keep_free_text_filters_intact(client: httpx.AsyncClient) -> None:
    """Free-text filters go into query strings encoded: ``&``/``#``/``%`` cannot add or cut parameters."""
    r = await client.get("/admin/audit", params={"text": "a&page=9#x%y", "actor": "*"})
    assert r.status_code == 200, r.text[:300]
    soup = BeautifulSoup(r.text, "html.parser")
    export = soup.find("a", string="Export CSV")
    assert export is not None
    href = str(export["href"])
    assert "text=a%26page%3D9%23x%25y" in href and "#" not in href, href
