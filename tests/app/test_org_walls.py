"""Organisations are walls (issue #11, findings 1, 2 and 9, acceptance 2).

An entity's organisation is the one its registry record — named by the *key* — says,
never one a payload says. Each finding is replayed as the attacker did it, against a
real runtime (real nats-server with device NKey credentials where a device attacks,
real SQLite, the real app over ASGI), and shown refused with nothing changed in the
other organisation. The property test then lets every role of every organisation
make seeded random writes through every write path and compares what the other
organisations see before and after.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec
import nats
import pytest
from nats.aio.client import Client as NATS
from prometheus_client.parser import text_string_to_metric_families

from app.main import create_app
from app.runtime import Runtime
from core import topology
from core.contracts.common import new_id, utc_now
from db import alerts as alerts_db
from db import commands as commands_db
from db import embeds as embeds_db
from db import registry as registry_db
from services.nats_auth import inbox_prefix
from services.registry import apply_registry_entry
from services.schemas import CommandCreate, EntityCreate
from tests.app.test_auth_flow import PASSWORD, csrf_from, login
from tests.helpers import dlq, eventually, seed
from workers.base import DLQ_REASON, DLQ_SUBJECT

STATE = topology.BUCKET_STATE
REGISTRY = topology.BUCKET_REGISTRY
ADMIN = ["read", "commands", "admin"]


# ---------------------------------------------------------------- helpers
def _encode(value: Any) -> bytes:
    return msgspec.json.encode(value)


@asynccontextmanager
async def _key_client(rt: Runtime, scopes: list[str], org: str | None) -> AsyncIterator[httpx.AsyncClient]:
    """The app over ASGI with an API key of ``scopes`` in ``org`` (``None``: every organisation)."""
    key = await rt.services.apikeys.create("tests", f"k-{'-'.join(scopes)}-{org}-{new_id()[:6]}", scopes, org)
    transport = httpx.ASGITransport(app=create_app(rt))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers={"X-API-Key": key.key}
    ) as client:
        yield client


async def _user_client(rt: Runtime, email: str, role: str, orgs: list[str]) -> tuple[httpx.AsyncClient, str]:
    """A signed-in browser-like client (session cookie) and its CSRF token."""
    await rt.services.users.create("tests", email, role, orgs, PASSWORD)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(rt)), base_url="http://testserver")
    assert (await login(client, email)).status_code == 303
    return client, csrf_from((await client.get("/")).text)


async def _device(rt: Runtime, org: str) -> NATS:
    """A device's NATS connection with an NKey credential of ``org`` (embedded server)."""
    key = await rt.services.apikeys.create("tests", f"device-{org}", ["read"], org, nats=True)
    manager = rt.services.nats_auth
    assert manager is not None and rt.nats_server is not None and key.nats_seed
    await manager.apply()

    async def quiet(_exc: Exception) -> None:  # permission violations are expected here
        return None

    return await nats.connect(
        rt.nats_server.url,
        nkeys_seed_str=key.nats_seed,
        inbox_prefix=inbox_prefix(key.key_id),
        error_cb=quiet,
        allow_reconnect=False,
    )


async def _embedded(make_runtime: Any) -> Runtime:
    """A runtime with the embedded nats-server (device credentials); nothing goes offline or expires."""
    rt: Runtime = await make_runtime(nats_url="", nats_port=-1, offline_after=3600.0, command_ttl=3600.0)
    return rt


async def _two_orgs(rt: Runtime) -> None:
    """org1 with a-0, a-1; org2 with b-0, b-1."""
    await seed(rt, "org1", 2, prefix="a")
    await seed(rt, "org2", 2, prefix="b")


def _worker(rt: Runtime, name: str) -> Any:
    return next(w for w in rt.workers.workers if w.name == name)


async def _registry_snapshot(rt: Runtime) -> dict[str, Any]:
    """Every registry key's revision and value, and the SQLite projection's rows."""
    kv: dict[str, Any] = {}
    for key in await rt.kv_registry.keys():
        entry = await rt.kv_registry.get(key)
        kv[key] = (entry.revision, entry.value)
    orgs = [r.to_record() for r in await registry_db.list_orgs(rt.db, limit=1000)]
    entities = [r.to_record() for r in await registry_db.list_entities(rt.db, limit=1000)]
    return {"kv": kv, "orgs": msgspec.to_builtins(orgs), "entities": msgspec.to_builtins(entities)}


async def _kv_form(
    client: httpx.AsyncClient, bucket: str, action: str, key: str, value: Any, revision: int, csrf: str = ""
) -> httpx.Response:
    data = {"key": key, "value": json.dumps(value), "revision": str(revision), "confirm": "yes"}
    if csrf:
        data["csrf_token"] = csrf
    return await client.post(f"/nats/kv/{bucket}/{action}", data=data)


async def _revision(rt: Runtime, bucket: str, key: str) -> int:
    kv = rt.kv_state if bucket == STATE else rt.kv_registry
    try:
        return (await kv.get(key)).revision or 0
    except Exception:  # noqa: BLE001 - missing or deleted key: a create
        return 0


async def _wall_metric(rt: Runtime) -> dict[tuple[str, str], float]:
    """``overwatch_org_wall_rejected_total`` from ``/metrics`` by (source, reason)."""
    async with _key_client(rt, ["read"], None) as http:
        text = (await http.get("/metrics")).text
    return {
        (sample.labels["source"], sample.labels["reason"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "overwatch_org_wall_rejected_total"
    }


# ---------------------------------------------------------------- finding 1
async def test_registry_takeover_through_the_kv_browser_is_refused(runtime: Runtime) -> None:
    await _two_orgs(runtime)
    b0 = msgspec.json.decode((await runtime.kv_registry.get("entity.b-0")).value or b"")
    org2 = msgspec.json.decode((await runtime.kv_registry.get("org.org2")).value or b"")
    before = await _registry_snapshot(runtime)
    # The reported attack: the organisation's own keys, with bodies naming another organisation's things.
    attacks = [
        ("entity.a-0", {**b0, "org_id": "org1"}),  # "my" key, org2's entity: moved b-0 into org1
        ("org.org1", {**org2, "name": "Renamed by org1"}),  # "my" key, org2's id: renamed org2
        ("entity.b-0", {**b0, "org_id": "org1"}),  # org2's key
        ("entity.new-1", {**b0, "entity_id": "new-1", "org_id": "org2"}),  # a new entity in org2
    ]
    async with _key_client(runtime, ADMIN, "org1") as org1_admin, _key_client(runtime, ADMIN, None) as root:
        for who in (org1_admin, root):  # read-only for every role, global admins included
            for key, body in attacks:
                revision = await _revision(runtime, REGISTRY, key)
                for action in ("put", "delete"):
                    reply = await _kv_form(who, REGISTRY, action, key, body, revision)
                    assert reply.status_code == 403, (key, action, reply.text)
                    assert "read-only in the console" in reply.text
            assert (await who.get(f"/nats/kv/{REGISTRY}/edit", params={"key": "entity.a-0"})).status_code == 403
            assert (await who.get(f"/nats/kv/{REGISTRY}/edit")).status_code == 403
            page = await who.get(f"/nats/kv/{REGISTRY}/key", params={"key": "entity.a-0"})
            assert page.status_code == 200 and 'id="kv-read-only"' in page.text
            assert 'id="kv-edit"' not in page.text and 'id="kv-delete"' not in page.text
            listing = await who.get(f"/nats/kv/{REGISTRY}")
            assert 'id="kv-new-key"' not in listing.text and 'id="kv-read-only"' in listing.text
        # The state bucket stays writable, for the key's own organisation only, and never to name another.
        own = await root.get(f"/nats/kv/{STATE}", params={"filter": "*"})
        assert 'id="kv-new-key"' in own.text and 'id="kv-read-only"' not in own.text
        other = await _kv_form(org1_admin, STATE, "put", "b-0", {"note": "x"}, await _revision(runtime, STATE, "b-0"))
        assert other.status_code == 403
        rev = await _revision(runtime, STATE, "a-0")
        named = await _kv_form(org1_admin, STATE, "put", "a-0", {"org_id": "org2", "is_live": True}, rev)
        assert named.status_code == 422 and "organisation" in named.text
        renamed = await _kv_form(org1_admin, STATE, "put", "a-0", {"entity_id": "b-0"}, rev)
        assert renamed.status_code == 422 and "b-0" in renamed.text
        note = await _kv_form(org1_admin, STATE, "put", "a-0.note", {"text": "own"}, 0)
        assert note.status_code == 303  # what the admin may do still works

    assert await _registry_snapshot(runtime) == before
    row = await registry_db.get_entity(runtime.db, "b-0")
    assert row is not None and row.org_id == "org2"
    org_row = await registry_db.get_org(runtime.db, "org2")
    assert org_row is not None and org_row.name == "Org org2"


async def test_the_projection_refuses_records_that_disagree_with_their_key(runtime: Runtime) -> None:
    """Defence in depth: even a record that reached the bucket cannot move anything across organisations."""
    await _two_orgs(runtime)
    projector = _worker(runtime, "registry")
    kv = runtime.kv_registry
    b0 = msgspec.json.decode((await kv.get("entity.b-0")).value or b"")
    org2 = msgspec.json.decode((await kv.get("org.org2")).value or b"")
    a0_before = await registry_db.get_entity(runtime.db, "a-0")
    await kv.put("entity.a-0", _encode({**b0, "org_id": "org1"}))  # key a-0, body b-0
    await kv.put("org.org1", _encode({**org2, "name": "Renamed"}))  # key org1, body org2
    await kv.put("entity.b-0", _encode({**b0, "org_id": "org1", "updated_at": utc_now()}))  # a move
    await kv.put("entity.x.y", _encode({**b0, "entity_id": "x.y"}))  # not an id
    await eventually(
        lambda: projector.rejected == {"key_mismatch": 2, "org_move": 1, "invalid": 1},
        what="four refused records",
    )
    assert projector.stats.failed == 4 and "refused" in projector.stats.last_error
    assert (await _wall_metric(runtime))[("registry", "key_mismatch")] == 2
    b0_row = await registry_db.get_entity(runtime.db, "b-0")
    assert b0_row is not None and b0_row.org_id == "org2"
    assert await registry_db.get_entity(runtime.db, "a-0") == a0_before
    org_row = await registry_db.get_org(runtime.db, "org2")
    assert org_row is not None and org_row.name == "Org org2"
    assert runtime.services.state_cache.org_of("b-0") == "org2"

    # A record created after the projected one was last changed is a re-creation (a node that
    # missed the delete): that is the only way an entity's organisation changes.
    later = "2999-01-01T00:00:00.000Z"
    recreated = _encode({**b0, "entity_id": "b-1", "org_id": "org1", "created_at": later, "updated_at": later})
    b1 = await registry_db.get_entity(runtime.db, "b-1")
    assert b1 is not None
    assert await apply_registry_entry(runtime.db, runtime.hub, "entity.b-1", recreated, b1.revision + 100)
    moved = await registry_db.get_entity(runtime.db, "b-1")
    assert moved is not None and moved.org_id == "org1" and runtime.services.state_cache.org_of("b-1") == "org1"


# ---------------------------------------------------------------- finding 2
async def test_state_naming_another_organisation_is_never_shown_there(make_runtime: Any) -> None:
    rt = await _embedded(make_runtime)
    await _two_orgs(rt)
    cache = rt.services.state_cache
    device = await _device(rt, "org1")
    js = device.jetstream(timeout=5)
    async with _key_client(rt, ["read"], "org2") as org2_viewer, _key_client(rt, ["read"], "org1") as org1_viewer:
        before = await _what_org_sees(rt, org2_viewer, "org2")
        # The reported attack: the device writes its own state key naming org2, battery low.
        hostile = {"entity_id": "a-0", "org_id": "org2", "name": "a 0", "is_live": True}
        await js.publish(f"$KV.{STATE}.a-0", _encode({**hostile, "power": {"battery_remaining": 3.0}}))
        # Control through the same path: a value naming its own organisation is shown and alerts there.
        own = {"entity_id": "a-1", "org_id": "org1", "is_live": True, "power": {"battery_remaining": 4.0}}
        await js.publish(f"$KV.{STATE}.a-1", _encode(own))
        alert = await eventually(lambda: alerts_db.get_alert(rt.db, "battery:a-1"), what="a-1 battery alert")
        assert alert.org_id == "org1"
        # The cache and the state alerts apply writes in order: a-0's was judged before a-1's.
        assert await _what_org_sees(rt, org2_viewer, "org2") == before
        assert await alerts_db.get_alert(rt.db, "battery:a-0") is None
        assert cache.withheld.get("a-0") == "org_mismatch" and cache.rejected["org_mismatch"] >= 1
        assert cache.get("a-0") is None and "a-0" not in cache.all()
        assert (await _wall_metric(rt))[("state", "org_mismatch")] >= 1
        live1 = (await org1_viewer.get("/api/entities")).json()
        assert [(e["entity_id"], e["org_id"]) for e in live1] == [("a-1", "org1")]
        assert (await org1_viewer.get("/api/entities/a-0")).status_code == 404

        # The device corrects its value: the entity is shown again, in its registry organisation.
        await js.publish(f"$KV.{STATE}.a-0", _encode({**hostile, "org_id": "org1"}))
        view = await eventually(lambda: cache.get("a-0"), what="a-0 shown again")
        assert view["org_id"] == "org1" and "a-0" not in cache.withheld
        # A value that leaves org_id out gets the registry's.
        await js.publish(f"$KV.{STATE}.a-0", _encode({"is_live": True, "status": "active"}))
        await eventually(lambda: (cache.get("a-0") or {}).get("status") == "active", what="a-0 without org_id")
        assert (cache.get("a-0") or {})["org_id"] == "org1"
        assert await _what_org_sees(rt, org2_viewer, "org2") == before
    await device.close()


async def test_a_registry_change_re_judges_the_cached_view(runtime: Runtime) -> None:
    """State written before the entity is registered is shown once it is, and hidden once it is deleted."""
    await seed(runtime, "org1", 0)
    cache = runtime.services.state_cache
    await runtime.kv_state.put("late-0", _encode({"entity_id": "late-0", "org_id": "org1", "is_live": True}))
    await eventually(lambda: cache.withheld.get("late-0") == "unregistered", what="unregistered state withheld")
    assert cache.rejected["unregistered"] >= 1 and cache.get("late-0") is None
    await runtime.services.registry.create_entity("org1", EntityCreate(entity_id="late-0", entity_type="waypoint"))
    view = await eventually(lambda: cache.get("late-0"), what="shown once registered")
    assert view["org_id"] == "org1"
    await runtime.services.registry.delete_entity("org1", "late-0")
    await eventually(lambda: cache.get("late-0") is None, what="withheld once deleted")


# ---------------------------------------------------------------- finding 9
async def test_an_ack_for_another_organisations_command_is_dead_lettered(make_runtime: Any) -> None:
    rt = await _embedded(make_runtime)
    await _two_orgs(rt)
    command = await rt.services.commands.send("org2", "b-0", CommandCreate(command="hold"))
    assert command.status == "queued"
    device = await _device(rt, "org1")
    js = device.jetstream(timeout=5)
    ack = _encode({"command_id": command.command_id, "status": "failed", "detail": "pwned"})
    # The reported attack (the device's own organisation's subject, org2's entity), and the same
    # command id acked as one of its own entities'.
    subjects = [topology.command_ack_subject("org1", "b-0"), topology.command_ack_subject("org1", "a-0")]
    for subject in subjects:
        assert (await js.publish(subject, ack)).seq > 0  # its credentials allow these subjects
    letters = await eventually(lambda: _dead_letters(rt, subjects), what="both acks dead-lettered")
    for subject in subjects:
        assert "is not a command of entity" in letters[subject], letters
        assert "org2" not in letters[subject]  # the refusal says nothing about the other organisation
    row = await commands_db.get_command(rt.db, command.command_id)
    assert row is not None and row.status == "queued" and row.detail == ""
    # The command's own entity still acks it.
    await rt.js.publish(
        topology.command_ack_subject("org2", "b-0"), _encode({"command_id": command.command_id, "status": "accepted"})
    )
    await eventually(lambda: _status(rt, command.command_id, "accepted"), what="own ack applied")
    await device.close()


async def _dead_letters(rt: Runtime, subjects: list[str]) -> dict[str, str] | None:
    found = {
        str((m.headers or {}).get(DLQ_SUBJECT)): str((m.headers or {}).get(DLQ_REASON))
        for m in await dlq(rt.js)
        if (m.headers or {}).get(DLQ_SUBJECT) in subjects
    }
    return found if len(found) == len(subjects) else None


async def _status(rt: Runtime, command_id: str, status: str) -> bool:
    row = await commands_db.get_command(rt.db, command_id)
    return row is not None and row.status == status


# ---------------------------------------------------------------- acceptance 2: the property
ORGS = ("org1", "org2", "org3")
ROLES = ("viewer", "operator", "admin", "device")
OPS_PER_PAIR = 10  # random writes per (role, organisation)
SEED = 20_110


async def _what_org_sees(rt: Runtime, client: httpx.AsyncClient, org: str) -> dict[str, Any]:
    """What ``client`` (a viewer of ``org``) sees: API lists, overview and fleet, alerts, states, commands."""
    seen: dict[str, Any] = {}
    seen["live"] = (await client.get("/api/entities")).json()
    seen["org"] = (await client.get(f"/api/v1/organizations/{org}")).json()
    registry = (await client.get(f"/api/v1/organizations/{org}/entities", params={"limit": 500})).json()
    seen["entities"] = registry["items"]
    seen["alerts"] = (await client.get("/api/v1/alerts", params={"limit": 500})).json()["items"]
    overview = (await client.get("/", headers={"accept": "text/html"})).text
    seen["cards"] = sorted(re.findall(r'id="card-([^"]+)"', overview))
    summary = re.search(r'<section id="fleet-summary".*?</section>', overview, re.S)
    seen["summary"] = summary.group(0) if summary else None
    fleet = (await client.get("/fleet", headers={"accept": "text/html"})).text
    seen["fleet"] = sorted(re.findall(r'id="row-([^"]+)"', fleet))
    for entity in seen["entities"]:
        base = f"/api/v1/organizations/{org}/entities/{entity['entity_id']}"
        state = await client.get(f"{base}/state")
        seen[f"state:{entity['entity_id']}"] = (state.status_code, state.text)
        seen[f"commands:{entity['entity_id']}"] = (await client.get(f"{base}/commands")).json()["items"]
    ids = {e["entity_id"] for e in seen["entities"]}
    seen["public"] = sorted(
        (kind, target)
        for kind, target in await embeds_db.list_public(rt.db)
        if (kind == "fleet" and target == org) or (kind == "entity" and target in ids)
    )
    return seen


@dataclass
class Caller:
    """One role of one organisation, with its way in (HTTP client or device connection)."""

    org: str
    role: str
    http: httpx.AsyncClient | None = None
    csrf: str = ""
    nc: NATS | None = None


@dataclass
class World:
    """What the random writes aim at: every organisation's entities, alerts and commands."""

    entities: dict[str, list[str]]
    alerts: dict[str, str]
    commands: dict[str, str]
    log: list[str] = field(default_factory=list)

    def others(self, org: str) -> list[str]:
        return [o for o in ORGS if o != org]


def _target(rng: random.Random, world: World, caller: Caller) -> tuple[str, str, str]:
    """(victim organisation, an organisation for the URL, an entity id: the victim's or one's own)."""
    victim = rng.choice(world.others(caller.org))
    url_org = rng.choice([caller.org, victim, victim])
    entity = rng.choice(world.entities[victim] * 2 + world.entities[caller.org])
    return victim, url_org, entity


def _hostile_state(rng: random.Random, world: World, caller: Caller, victim: str) -> dict[str, Any]:
    return {
        "entity_id": rng.choice([rng.choice(world.entities[caller.org]), rng.choice(world.entities[victim])]),
        "org_id": rng.choice([victim, victim, caller.org]),
        "name": "takeover",
        "is_live": True,
        "power": {"battery_remaining": 2.0},
        "c4isr": {"threat_intelligence": {"threat_alerts": [{"track_id": "t1", "alert_type": "HIGH_THREAT"}]}},
    }


async def _http_write(rng: random.Random, rt: Runtime, world: World, caller: Caller) -> str:
    """One random write through REST, an HTML form or the KV browser."""
    assert caller.http is not None
    http, csrf = caller.http, caller.csrf
    headers = {"X-CSRF-Token": csrf} if csrf else {}
    form_csrf = {"csrf_token": csrf} if csrf else {}
    victim, org, entity = _target(rng, world, caller)
    base = f"/api/v1/organizations/{org}/entities"
    fresh = f"{caller.org}-n{rng.randrange(1000)}"  # ids of one's own namespace: no id is reused across orgs
    choice = rng.randrange(14)
    if choice == 0:
        body = {"entity_id": rng.choice([entity, fresh]), "entity_type": "waypoint", "name": "x"}
        r = await http.post(f"{base}/", json=body, headers=headers)
    elif choice == 1:
        r = await http.put(f"{base}/{entity}", json={"name": "renamed", "status": "error"}, headers=headers)
    elif choice == 2:
        r = await http.delete(f"{base}/{entity}", headers=headers)
    elif choice == 3:
        r = await http.put(f"/api/v1/organizations/{org}", json={"description": "took over"}, headers=headers)
    elif choice == 4:
        r = await http.post(f"{base}/{entity}/commands", json={"command": "rtl"}, headers=headers)
    elif choice == 5:
        r = await http.post(f"/api/v1/alerts/{world.alerts[victim]}/ack", headers=headers)
    elif choice == 6:
        r = await http.post(f"/entities/{entity}/commands", data={"command": "land", **form_csrf})
    elif choice == 7:
        r = await http.post(f"/entities/{entity}/embed", data={"public": "on", **form_csrf})
    elif choice == 8:
        r = await http.post(f"/fleet/embed/{org}", data={"public": "on", **form_csrf})
    elif choice == 9:
        r = await http.post(f"/alerts/{world.alerts[victim]}/ack", data=form_csrf)
    elif choice == 10:
        # A rule of one's own organisation may only name one's own entities to matter: aim it at the victim's.
        rule_org, rule_entity = rng.choice([(victim, ""), ("", ""), (caller.org, rng.choice(world.entities[victim]))])
        form = {"name": "r", "kind": "battery", "threshold": "101", "enabled": "on", "org_id": rule_org}
        r = await http.post("/alerts/rules", data={**form, "entity_id": rule_entity, **form_csrf})
    elif choice in (11, 12):
        bucket = STATE if choice == 11 else REGISTRY
        if bucket == STATE:
            key = rng.choice([entity, f"{entity}.mavlink"])
            value: Any = _hostile_state(rng, world, caller, victim)
        else:
            key = rng.choice([f"entity.{entity}", f"org.{org}"])
            value = {"entity_id": rng.choice(world.entities[victim]), "org_id": caller.org, "entity_type": "waypoint"}
        r = await _kv_form(http, bucket, "put", key, value, await _revision(rt, bucket, key), csrf)
    else:
        bucket = rng.choice([STATE, REGISTRY])
        key = entity if bucket == STATE else rng.choice([f"entity.{entity}", f"org.{victim}"])
        r = await _kv_form(http, bucket, "delete", key, None, await _revision(rt, bucket, key), csrf)
    assert r.status_code < 500, (choice, r.status_code, r.text[:300])
    return f"{caller.role}@{caller.org} op{choice} {org}/{entity} -> {r.status_code}"


async def _device_write(rng: random.Random, world: World, caller: Caller) -> str:
    """One random publish with the device's credentials: own-organisation subjects naming others' things."""
    assert caller.nc is not None
    nc, js = caller.nc, caller.nc.jetstream(timeout=2)
    victim, _org, entity = _target(rng, world, caller)
    own = caller.org
    choice = rng.randrange(8)
    denied = False
    if choice == 0:
        subject, body = topology.telemetry_subject(own, entity), {"power": {"battery_remaining": 1.0}}
    elif choice == 1:
        subject, body = topology.event_subject("alert", own, entity), {"event_type": "alert", "code": "x"}
    elif choice == 2:
        subject = topology.command_ack_subject(own, entity)
        body = {"command_id": world.commands[victim], "status": rng.choice(["failed", "completed", "rejected"])}
    elif choice == 3:
        data = {"entity_id": rng.choice([entity, f"{own}-n{rng.randrange(1000)}"]), "org_id": own}
        subject = topology.entity_lifecycle_subject(own, "created")
        body = {"id": new_id(), "type": "created", "timestamp": utc_now(), "source": "device", "data": data}
    elif choice == 4:
        data = {"entity_id": entity, "org_id": own, "status": "error"}
        subject = topology.entity_lifecycle_subject(own, "status")
        body = {"id": new_id(), "type": "status", "timestamp": utc_now(), "source": "device", "data": data}
    elif choice == 5:  # its own state key, naming the victim
        subject = f"$KV.{STATE}.{rng.choice(world.entities[own])}"
        body = _hostile_state(rng, world, caller, victim)
    elif choice == 6:  # the victim's subjects and keys: refused by the server
        subject, denied = rng.choice([topology.telemetry_subject(victim, entity), f"$KV.{STATE}.{entity}"]), True
        body = {"org_id": own, "power": {"battery_remaining": 1.0}}
    else:
        subject, denied = f"$KV.{REGISTRY}.entity.{entity}", True
        body = {"entity_id": entity, "org_id": own, "entity_type": "waypoint"}
    if denied:
        await nc.publish(subject, _encode(body))
        await nc.flush()
        return f"device@{own} {subject} (denied)"
    try:
        await js.publish(subject, _encode(body))  # acked: stored before the barrier's sentinel
    except Exception as exc:  # noqa: BLE001 - e.g. a key of an entity deleted meanwhile
        return f"device@{own} {subject} refused: {type(exc).__name__}"
    return f"device@{own} {subject} stored"


async def _settle(rt: Runtime, org: str, round_: int) -> None:  # round_: how often org settled before
    """Wait until everything written so far has had all its effects (no sleeping).

    A sentinel per stream is stored after every message the devices published before it;
    then each durable consumer must have nothing pending or unacknowledged. A KV sentinel
    on the organisation's barrier entity is applied by the state cache after every earlier
    KV write, and the battery alert it toggles is evaluated after every earlier state change.
    """
    bar = f"{org}-bar"
    garbage = b"not json"
    for subject in (
        topology.telemetry_subject(org, bar),
        topology.event_subject("alert", org, bar),
        topology.command_ack_subject(org, bar),
        topology.entity_lifecycle_subject(org, "status"),
    ):
        await rt.js.publish(subject, garbage)
    for spec in topology.CONSUMERS:
        durable = spec.config.durable_name or ""

        async def drained(stream: str = spec.stream, name: str = durable) -> bool:
            info = await rt.js.consumer_info(stream, name)
            return info.num_pending == 0 and info.num_ack_pending == 0

        await eventually(drained, timeout=15, what=f"{durable} drained")
    low = round_ % 2 == 0
    await rt.kv_state.put(f"{bar}.power", _encode({"battery_remaining": 5.0 if low else 90.0}))

    async def toggled() -> bool:
        row = await alerts_db.get_alert(rt.db, f"battery:{bar}")
        return row is not None and row.status == ("active" if low else "cleared")

    await eventually(toggled, timeout=10, what="state alerts caught up")
    cache = rt.services.state_cache

    async def dispatched() -> bool:
        queued = await rt.db.fetch_rows("SELECT entity_id FROM commands WHERE status = 'queued'")
        return not any((cache.get(str(r[0])) or {}).get("is_live") for r in queued)

    await eventually(dispatched, timeout=10, what="queued commands of live entities delivered")


@pytest.mark.timeout(120)
async def test_no_write_by_any_role_of_one_organisation_changes_what_another_sees(make_runtime: Any) -> None:
    rng = random.Random(SEED)
    rt = await _embedded(make_runtime)
    world = World(entities={}, alerts={}, commands={})
    for org in ORGS:
        world.entities[org] = await seed(rt, org, 2, prefix=f"{org}-e")
        await rt.services.registry.create_entity(org, EntityCreate(entity_id=f"{org}-bar", entity_type="waypoint"))
        alert_id = f"device:{world.entities[org][0]}:seed"
        await rt.services.alerts.raise_alert(
            alert_id, kind="device", severity="warning", title="seeded", reason="r", org_id=org,
            entity_id=world.entities[org][0],
        )  # fmt: skip
        world.alerts[org] = alert_id
        sent = await rt.services.commands.send(org, world.entities[org][1], CommandCreate(command="hold"))
        world.commands[org] = sent.command_id
    callers: list[Caller] = []
    viewers: dict[str, httpx.AsyncClient] = {}
    opened: list[httpx.AsyncClient] = []
    try:
        for org in ORGS:
            for role in ("viewer", "operator"):
                client, token = await _user_client(rt, f"{role}@{org}.test", role, [org])
                opened.append(client)
                callers.append(Caller(org, role, http=client, csrf=token))
            admin_key = await rt.services.apikeys.create("tests", f"admin-{org}", ADMIN, org)
            watch_key = await rt.services.apikeys.create("tests", f"watch-{org}", ["read"], org)
            transport = httpx.ASGITransport(app=create_app(rt))
            for key, role in ((admin_key, "admin"), (watch_key, "watch")):
                client = httpx.AsyncClient(transport=transport, base_url="http://t", headers={"X-API-Key": key.key})
                opened.append(client)
                if role == "admin":
                    callers.append(Caller(org, "admin", http=client))
                else:
                    viewers[org] = client
            callers.append(Caller(org, "device", nc=await _device(rt, org)))
        assert {(c.org, c.role) for c in callers} == {(o, r) for o in ORGS for r in ROLES}

        for attacker in ORGS:
            await _settle(rt, attacker, 0)
            victims = [o for o in ORGS if o != attacker]
            before = {v: await _what_org_sees(rt, viewers[v], v) for v in victims}
            turns = [c for c in callers if c.org == attacker] * OPS_PER_PAIR
            rng.shuffle(turns)
            for caller in turns:
                write: Callable[[], Awaitable[str]] = (
                    (lambda c=caller: _device_write(rng, world, c))
                    if caller.role == "device"
                    else (lambda c=caller: _http_write(rng, rt, world, c))
                )
                world.log.append(await write())
            await _settle(rt, attacker, 1)
            for victim in victims:
                after = await _what_org_sees(rt, viewers[victim], victim)
                changed = [k for k in before[victim].keys() | after.keys() if before[victim].get(k) != after.get(k)]
                diff = {k: (before[victim].get(k), after.get(k)) for k in changed}
                assert not changed, f"{attacker}'s writes changed what {victim} sees: {diff!r:.3000}\n" + "\n".join(
                    world.log[-len(turns) :]
                )
        # The walls held because the writes were refused, not because nothing was tried.
        assert sum(" -> 403" in line or " -> 404" in line for line in world.log) > 20, world.log
        assert rt.services.state_cache.rejected["org_mismatch"] > 0
    finally:
        for client in opened:
            await client.aclose()
        for caller in callers:
            if caller.nc is not None:
                await caller.nc.close()


async def test_an_entity_id_reused_in_another_organisation_never_touches_the_first_ones_alerts(
    runtime: Runtime,
) -> None:
    """Alert ids name an entity; a re-created id in another organisation starts its own alert row."""
    alerts = runtime.services.alerts
    await alerts.raise_alert(
        "battery:re-used",
        kind="battery",
        severity="warning",
        title="low",
        reason="12 %",
        org_id="org-a",
        entity_id="re-used",
    )
    await alerts.raise_alert(
        "battery:re-used",
        kind="battery",
        severity="critical",
        title="low",
        reason="3 %",
        org_id="org-b",
        entity_id="re-used",
    )
    first = await alerts_db.list_alerts(runtime.db, org_ids=["org-a"])
    second = await alerts_db.list_alerts(runtime.db, org_ids=["org-b"])
    assert [(a.alert_id, a.reason, a.status) for a in first] == [("battery:re-used~org-a", "12 %", "cleared")]
    assert [(a.alert_id, a.reason, a.status) for a in second] == [("battery:re-used", "3 %", "active")]
