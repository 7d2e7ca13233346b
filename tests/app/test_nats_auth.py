"""External NATS clients: only with credentials, and only within their organisation."""

from __future__ import annotations

import asyncio
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js.errors import KeyNotFoundError

from app import topology
from app.nats_auth import inbox_prefix
from app.runtime import Runtime
from tests.helpers import eventually, seed, state, telemetry


async def _device(rt: Runtime, org: str) -> tuple[nats.NATS, list[str]]:
    key = await rt.services.apikeys.create("tests", f"device-{org}", ["read"], org, nats=True)
    manager = rt.services.nats_auth
    assert manager is not None
    await manager.apply()
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    assert rt.nats_server is not None and key.nats_seed
    nc = await nats.connect(
        rt.nats_server.url,
        nkeys_seed_str=key.nats_seed,
        inbox_prefix=inbox_prefix(key.key_id),
        error_cb=on_error,
        allow_reconnect=False,
    )
    return nc, errors


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
        await nc.flush()
        kv = await js.key_value(topology.BUCKET_STATE)
        own = await kv.get(a1)
        assert own.value and b'"battery_remaining":42.0' in own.value
        with pytest.raises((asyncio.TimeoutError, KeyNotFoundError, nats.errors.Error)):
            await kv.get(b1)
        with pytest.raises(Exception):  # noqa: B017
            await kv.put(b1, b"{}")
        await asyncio.sleep(0.3)
        joined = " | ".join(errors).lower()
        assert "permissions violation for publish" in joined, errors
        assert "permissions violation for subscription" in joined, errors
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
    await manager.apply()
    await asyncio.sleep(0.3)
    await _refused(rt.nats_server.url, nkeys_seed_str=key.nats_seed)


async def _refused(url: str, **options: Any) -> None:
    """Connecting must fail; the half-open client is closed either way (no leaked sockets)."""
    client = NATS()
    try:
        with pytest.raises(Exception):  # noqa: B017 - nats-py raises different errors by version
            await client.connect(url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2, **options)
    finally:
        await client.close()
