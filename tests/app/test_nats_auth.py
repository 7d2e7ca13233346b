"""External NATS clients: only with credentials, only within their organisation, and revocable at once."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import nats
import nkeys
import pytest
from nats.js.errors import KeyNotFoundError

from app.main import create_app
from app.runtime import Runtime
from core import topology
from core.contracts.common import new_id, utc_now
from core.contracts.events import EntityLifecycleEvent, LifecycleData
from core.errors import Invalid
from db import apikeys as keys_db
from db import registry as registry_db
from db.apikeys import ApiKeyRow
from fabric.tls import self_signed
from services.auth.apikeys import NewKey
from services.nats_auth import state_bucket
from tests.conftest import OVERWATCH, KeyConnection, api_client, connect_with_key
from tests.helpers import connect_once, dlq, eventually, seed, state, synced, telemetry
from workers.base import DLQ_REASON

REVOCATION_BUDGET = 2.0  # seconds from revocation to the device being cut off


Device = KeyConnection  # a device's connection


async def _connect_device(rt: Runtime, key: NewKey) -> Device:
    device: Device = await connect_with_key(rt, key)
    return device


async def _device(rt: Runtime, org: str) -> tuple[nats.NATS, list[str]]:
    key = await rt.services.apikeys.create("tests", f"device-{org}", ["read"], org, nats=True)
    manager = rt.services.nats_auth
    assert manager is not None
    await manager.apply()
    device = await _connect_device(rt, key)
    return device.nc, device.errors


async def test_org_credentials_are_confined_to_their_organisation(make_runtime: Any) -> None:
    rt: Runtime = await make_runtime(nats_url="", nats_port=-1)
    assert rt.nats_server is not None
    (a1,) = await seed(rt, org_id="orga", entities=1, prefix="a")
    (b1,) = await seed(rt, org_id="orgb", entities=1, prefix="b")
    await rt.js.publish(topology.telemetry_subject("orgb", b1), telemetry())
    await eventually(lambda: state(rt, b1), what="b1 state")

    # Anonymous clients are refused outright.
    await _refused(rt.nats_server.url)

    nc, errors = await _device(rt, "orga")
    js = nc.jetstream(timeout=2)
    try:
        ack = await js.publish(topology.telemetry_subject("orga", a1), telemetry(battery=42.0))
        assert ack.seq > 0
        doc = await eventually(lambda: _battery(rt, a1, 42.0), what="own telemetry applied")
        assert doc

        with pytest.raises(Exception):  # noqa: B017 - no ack arrives for a refused publish
            await js.publish(topology.telemetry_subject("orgb", b1), telemetry(battery=1.0))
        await nc.subscribe(topology.command_wildcard("orgb"))
        await synced(nc)
        kv = state_bucket(js)  # bound without STREAM.INFO, which devices may not use
        own = await kv.get(a1)
        assert own.value and b'"battery_remaining":42.0' in own.value
        with pytest.raises((asyncio.TimeoutError, KeyNotFoundError, nats.errors.Error)):
            await kv.get(b1)
        with pytest.raises(Exception):  # noqa: B017
            await kv.put(b1, b"{}")
        # Finding 10: STREAM.INFO with a subjects filter listed every organisation's state keys.
        info_subject = f"$JS.API.STREAM.INFO.{topology.kv_stream(topology.BUCKET_STATE)}"
        with pytest.raises((asyncio.TimeoutError, nats.errors.Error)):
            await nc.request(info_subject, b'{"subjects_filter": ">"}', timeout=1.0)
        expected = (
            "permissions violation for publish",
            "permissions violation for subscription",
            f'publish to "{info_subject.lower()}"',
        )
        # The server reports each violation asynchronously (an -ERR the client hands to its error callback).
        await eventually(lambda: all(e in " | ".join(errors).lower() for e in expected), what="the violations reported")
        doc_b = await state(rt, b1)
        assert doc_b and doc_b["power"]["battery_remaining"] != 1.0
    finally:
        await nc.close()


async def _battery(rt: Runtime, entity_id: str, value: float) -> bool:
    doc = await state(rt, entity_id)
    return bool(doc and (doc.get("power") or {}).get("battery_remaining") == value)


async def test_revoked_key_loses_nats_access(make_runtime: Any) -> None:
    rt: Runtime = await make_runtime(nats_url="", nats_port=-1)
    await seed(rt, org_id="orga", entities=1, prefix="a")
    key = await rt.services.apikeys.create("tests", "device", ["read"], "orga", nats=True)
    manager = rt.services.nats_auth
    assert manager is not None and rt.nats_server is not None and key.nats_seed
    await manager.apply()
    nc = await nats.connect(rt.nats_server.url, nkeys_seed_str=key.nats_seed, allow_reconnect=False)
    await nc.close()
    await rt.services.apikeys.revoke("tests", key.key_id)
    await manager.apply()  # returns once nats-server has confirmed the reload
    await _refused(rt.nats_server.url, nkeys_seed_str=key.nats_seed)


async def _refused(url: str, **options: Any) -> None:
    """Connecting must fail; the half-open client is closed either way (no leaked sockets)."""
    with pytest.raises(Exception):  # noqa: B017 - nats-py raises different errors by version
        await connect_once(url, connect_timeout=2, **options)


# ---------------------------------------------------------------- finding 5: all-or-nothing, watched


async def test_a_key_whose_organisation_is_not_a_subject_token_is_refused(make_runtime: Any) -> None:
    rt: Runtime = await make_runtime(nats_url="", nats_port=-1)
    admin = await rt.services.apikeys.create("tests", "admin", ["read", "commands", "admin"], None)
    for org in ("a b", "org.x", "*", ">", "", "x" * 129, "o\ud800"):
        with pytest.raises(Invalid, match="organisation id"):
            await rt.services.apikeys.create("tests", "bad", ["read"], org, nats=True)
    async with api_client(create_app(rt), admin.key) as client:
        page = await client.post(
            "/admin/keys/", data={"name": "cam", "role": "operator", "org_id": "a b", "nats": "on"}
        )
        assert page.status_code == 400 and "must be 1-128 letters" in page.text
        for days in ("1e10", "nan", "inf", "-1"):
            page = await client.post(
                "/admin/keys/", data={"name": "k", "role": "viewer", "org_id": "orga", "expires_days": days}
            )
            assert page.status_code == 400, (days, page.status_code)
    assert [k.name for k in await rt.services.apikeys.list_keys()] == ["admin"]


async def test_a_record_that_cannot_be_rendered_is_left_out_not_the_whole_block(make_runtime: Any) -> None:
    rt: Runtime = await make_runtime(nats_url="", nats_port=-1)
    (a1,) = await seed(rt, org_id="orga", entities=1, prefix="a")
    manager = rt.services.nats_auth
    assert manager is not None
    # Rows an older version could store (no validation then): a bad organisation, a bad public key.
    good = await rt.services.apikeys.create("tests", "good", ["read"], "orga", nats=True)
    twin = await rt.services.apikeys.create("tests", "twin", ["read"], "orga", nats=True)
    for name, org, pub in (
        ("bad-org", "a b", _user_nkey()),
        ("bad-nkey", "orga", "U" + "A" * 55),
        ("duplicate", "orga", twin.nats_user),
    ):
        await keys_db.insert_key(
            rt.db,
            ApiKeyRow(
                key_id=new_id(),
                name=name,
                prefix="c4_live_xxxxxx",
                key_hash=new_id(),
                scopes="read",
                org_id=org,
                nats_pubkey=pub,
                created_by="tests",
                created_at=utc_now(),
                expires_at=None,
                last_used_at=None,
                revoked_at=None,
            ),
        )
    assert await manager.apply()
    # Left out: the bad organisation, the bad key, and both holders of the twin public key.
    assert len(manager.skipped) == 4, manager.skipped
    assert any("'a b' is not a subject token" in s for s in manager.skipped)
    assert sum("belongs to another key too" in s for s in manager.skipped) == 2
    assert manager.status()["ok"] and "4 records left out" in manager.status()["detail"]
    device = await _connect_device(rt, good)
    try:
        ack = await device.nc.jetstream(timeout=2).publish(topology.telemetry_subject("orga", a1), telemetry())
        assert ack.seq > 0
        # ... and the block keeps following changes: revocation still cuts the good key off.
        await rt.services.apikeys.revoke("tests", good.key_id)
        assert await manager.apply()
        await asyncio.wait_for(device.closed.wait(), REVOCATION_BUDGET)
    finally:
        await device.nc.close()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(rt)), base_url="http://t") as client:
        ready = await client.get("/health/ready")
    assert ready.status_code == 200, ready.text


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command for a certificate")
async def test_a_failed_reload_is_a_503_with_the_reason_until_it_succeeds(make_runtime: Any, tmp_path: Path) -> None:
    pair = self_signed(tmp_path / "tls", ["localhost"], ["127.0.0.1"])
    cert, key = tmp_path / "nats-cert.pem", tmp_path / "nats-key.pem"
    shutil.copy(pair.cert, cert)
    shutil.copy(pair.key, key)
    rt: Runtime = await make_runtime(nats_url="", nats_port=-1, nats_tls_cert=str(cert), nats_tls_key=str(key))
    await seed(rt, org_id="orga", entities=1, prefix="a")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(rt)), base_url="http://t") as client:

        async def ready() -> httpx.Response:
            return await client.get("/health/ready")

        await eventually(lambda: _status(ready, 200), what="ready")
        # The certificate file vanishes (a botched rotation): nats-server refuses every new configuration.
        cert.unlink()
        await rt.services.apikeys.create("tests", "device", ["read"], "orga", nats=True)
        response = await eventually(lambda: _status(ready, 503), what="503 after the failed reload")
        check = response.json()["checks"]["nats_auth"]
        assert check["ok"] is False and "refused the new configuration" in check["detail"], check
        assert "nats-cert.pem" in check["detail"]
        assert response.json()["checks"]["nats_server"]["ok"] is True  # it runs, on the old users
        shutil.copy(pair.cert, cert)
        await eventually(lambda: _status(ready, 200), timeout=10, what="ready again after the retry")


def _user_nkey() -> str:
    seed = nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER)
    return str(nkeys.from_seed(seed).public_key.decode())


async def _status(get: Any, code: int) -> httpx.Response | None:
    response: httpx.Response = await get()
    return response if response.status_code == code else None


async def test_revocation_through_the_console_disconnects_the_device_within_2_s(make_runtime: Any) -> None:
    rt: Runtime = await make_runtime(nats_url="", nats_port=-1)
    (a1,) = await seed(rt, org_id="orga", entities=1, prefix="a")
    admin = await rt.services.apikeys.create("tests", "admin", ["read", "commands", "admin"], None)
    key = await rt.services.apikeys.create("tests", "cam", ["read"], "orga", nats=True)
    manager = rt.services.nats_auth
    assert manager is not None
    await eventually(lambda: _has_user(rt, key), what="the new key's NATS user")
    device = await _connect_device(rt, key)
    js = device.nc.jetstream(timeout=1)
    assert (await js.publish(topology.telemetry_subject("orga", a1), telemetry())).seq > 0
    async with api_client(create_app(rt), admin.key) as client:
        start = time.monotonic()
        page = await client.post(f"/admin/keys/{key.key_id}/revoke")
        assert page.status_code == 200
        await asyncio.wait_for(device.closed.wait(), REVOCATION_BUDGET + 1)
    took = device.closed_at - start
    print(f"revocation (console) -> device disconnected in {took * 1000:.0f} ms")
    assert took <= REVOCATION_BUDGET
    with pytest.raises(nats.errors.Error):
        await device.nc.publish(topology.telemetry_subject("orga", a1), telemetry())
    assert rt.nats_server is not None
    await _refused(rt.nats_server.url, nkeys_seed_str=key.nats_seed)


async def test_revocation_by_the_cli_disconnects_the_device_within_2_s(make_runtime: Any, tmp_path: Path) -> None:
    rt: Runtime = await make_runtime(nats_url="", nats_port=-1)
    (a1,) = await seed(rt, org_id="orga", entities=1, prefix="a")
    key = await rt.services.apikeys.create("tests", "cam", ["read"], "orga", nats=True)
    await eventually(lambda: _has_user(rt, key), what="the new key's NATS user")
    device = await _connect_device(rt, key)
    assert (await device.nc.jetstream(timeout=1).publish(topology.telemetry_subject("orga", a1), telemetry())).seq

    async def commit_seen() -> float | None:
        # The revocation happens in another process: note when its transaction is visible here.
        row = await keys_db.get_key(rt.db, key.key_id)
        return time.monotonic() if row is not None and row.revoked_at else None

    watcher = asyncio.create_task(eventually(commit_seen, timeout=40, interval=0.01, what="the revocation committed"))
    env = {**os.environ, "OVERWATCH_DATA_DIR": rt.settings.data_dir}
    cli = await asyncio.create_subprocess_exec(
        OVERWATCH, "apikey", "revoke", "--id", key.key_id, env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(cli.communicate(), 30)
    assert cli.returncode == 0 and b"revoked cam" in out
    committed = await asyncio.wait_for(watcher, 5)
    await asyncio.wait_for(device.closed.wait(), REVOCATION_BUDGET + 1)
    took = device.closed_at - committed
    print(f"revocation (CLI, another process) -> device disconnected in {took * 1000:.0f} ms")
    assert took <= REVOCATION_BUDGET
    assert rt.nats_server is not None
    await _refused(rt.nats_server.url, nkeys_seed_str=key.nats_seed)


async def _has_user(rt: Runtime, key: NewKey) -> bool:
    assert rt.nats_server is not None and key.nats_user
    conf = (rt.nats_server.store_dir / "nats-server.conf").read_text()
    return key.nats_user in conf


# ---------------------------------------------------------------- finding 10: self-registration is limited


async def test_device_self_registration_stops_at_the_organisation_limit(make_runtime: Any) -> None:
    rt: Runtime = await make_runtime(nats_url="", nats_port=-1, max_entities_per_org=3)
    await seed(rt, org_id="orga", entities=1, prefix="a")
    await seed(rt, org_id="orgb", entities=1, prefix="b")
    key = await rt.services.apikeys.create("tests", "cam", ["read"], "orga", nats=True)
    await eventually(lambda: _has_user(rt, key), what="the new key's NATS user")
    device = await _connect_device(rt, key)
    js = device.nc.jetstream(timeout=2)
    try:
        for i in range(5):
            event = EntityLifecycleEvent(
                id=new_id(),
                type="created",
                timestamp=utc_now(),
                source="device",
                data=LifecycleData(entity_id=f"self-{i}", org_id="orga", entity_type="sensor_platform"),
            )
            await js.publish(topology.entity_lifecycle_subject("orga", "created"), msgspec.json.encode(event))
    finally:
        await device.nc.close()

    async def refused() -> list[str]:
        reasons = [(m.headers or {}).get(DLQ_REASON, "") for m in await dlq(rt.js)]
        return [r for r in reasons if "limit of 3 entities" in r]

    # a-0 and self-0, self-1 make three; self-2 .. self-4 are dead-lettered with the reason.
    reasons = await eventually(lambda: _at_least(refused, 3), what="three dead letters for the limit")
    assert all("OVERWATCH_MAX_ENTITIES_PER_ORG" in r for r in reasons), reasons
    assert sorted(r.split("entity ")[-1] for r in reasons) == [f"self-{i} was not registered" for i in (2, 3, 4)]
    assert await registry_db.count_entities(rt.db, "orga") == 3
    assert await registry_db.count_entities(rt.db, "orgb") == 1  # the other organisation is untouched


async def _at_least(get: Any, n: int) -> list[str] | None:
    found: list[str] = await get()
    return found if len(found) >= n else None
