"""Reply-subject injection: a device making the embedded server publish into another organisation's subjects.

nats-server checks a client's publish permissions on the subject it publishes to, not on
the reply subject it names: the server's answer (a PubAck, a direct-get response, an API
response) goes to that reply subject, and the JetStream streams capture it like any
publish. Each test here has a real device credential of organisation ``orga`` aim such
an answer at ``orgb``'s ingest subjects, shows the stream captured it (the attack works
at the NATS level) and that the ingest workers dead-letter it with the reason, leaving
``orgb``'s state untouched.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from app.runtime import Runtime
from core import topology
from services.nats_auth import STATE_PREFIX, STATE_STREAM
from tests.app.test_nats_auth import _device
from tests.helpers import dlq, eventually, seed, state, stream_messages, telemetry
from workers.base import DLQ_REASON, DLQ_SUBJECT, REPLY_INJECTION, server_reply

pytestmark = pytest.mark.timeout(30)


async def _world(rt: Runtime) -> tuple[str, str, NATS]:
    """``orga`` with a1 and a connected device credential; ``orgb`` with b1 and stored state."""
    (a1,) = await seed(rt, org_id="orga", entities=1, prefix="a")
    (b1,) = await seed(rt, org_id="orgb", entities=1, prefix="b")
    await rt.js.publish(topology.telemetry_subject("orgb", b1), telemetry(battery=55.0))
    await eventually(_has_battery(rt, b1, 55.0), what="b1 state")
    nc, _errors = await _device(rt, "orga")
    return a1, b1, nc


async def _battery(rt: Runtime, entity_id: str) -> Any:
    doc = await state(rt, entity_id) or {}
    return (doc.get("power") or {}).get("battery_remaining")


def _has_battery(rt: Runtime, entity_id: str, value: float) -> Any:
    async def check() -> bool:
        return bool(await _battery(rt, entity_id) == value)

    return check


async def _captured(rt: Runtime, stream: str, subject: str) -> list[Any]:
    return [m for m in await stream_messages(rt.js, stream) if m.subject == subject]


async def _injection_dead_letter(rt: Runtime, subject: str) -> Any:
    for msg in await dlq(rt.js):
        headers = msg.headers or {}
        if headers.get(DLQ_SUBJECT) == subject and headers.get(DLQ_REASON) == REPLY_INJECTION:
            return msg
    return None


def _injections(rt: Runtime) -> int:
    return sum(s["reply_injections"] for s in rt.workers.stats().values())


async def _snapshot(rt: Runtime, stream: str, subject: str, b1: str) -> tuple[dict[str, Any] | None, int]:
    """``orgb``'s state and how many messages ``subject`` holds, before the attack."""
    return await state(rt, b1), len(await _captured(rt, stream, subject))


async def _assert_rejected(
    rt: Runtime, stream: str, subject: str, before: tuple[dict[str, Any] | None, int], b1: str
) -> None:
    """The stream captured the server's answer; a worker dead-lettered it; ``orgb``'s state is as it was."""
    letter = await eventually(lambda: _injection_dead_letter(rt, subject), timeout=5, what="the dead letter")
    captured = await _captured(rt, stream, subject)
    assert len(captured) > before[1], "the server's reply did not reach the stream: the attack was not reproduced"
    assert letter.data in [m.data for m in captured]  # the server's answer, kept for inspection
    assert _injections(rt) >= 1
    after = await state(rt, b1)
    assert after == before[0], "the other organisation's state changed"


@pytest.mark.parametrize(
    ("stream", "target"),
    [
        (topology.STREAM_TELEMETRY, "constellation.telemetry.orgb.{b1}"),
        (topology.STREAM_EVENTS, "constellation.events.isr.orgb.{b1}"),
        (topology.STREAM_ENTITIES, "constellation.entities.orgb.created"),
        (topology.STREAM_COMMANDS, "constellation.commands.orgb.{b1}.ack"),
    ],
)
async def test_a_puback_redirected_into_another_organisation_is_dead_lettered(
    make_runtime: Any, stream: str, target: str
) -> None:
    """Attack (1): the device's own telemetry, published with another organisation's subject as reply."""
    rt: Runtime = await make_runtime(nats_url="", nats_port=-1)
    a1, b1, nc = await _world(rt)
    subject = target.format(b1=b1)
    before = await _snapshot(rt, stream, subject, b1)
    try:
        await nc.publish(topology.telemetry_subject("orga", a1), telemetry(battery=12.0), reply=subject)
        await nc.flush()
        await _assert_rejected(rt, stream, subject, before, b1)
        await eventually(_has_battery(rt, a1, 12.0), what="the device's own telemetry applied")
    finally:
        await nc.close()


async def test_a_direct_get_redirected_into_another_organisation_is_dead_lettered(make_runtime: Any) -> None:
    """Attack (2): the device's own key, written with telemetry it chose, answered into ``orgb``'s telemetry."""
    rt: Runtime = await make_runtime(nats_url="", nats_port=-1)
    a1, b1, nc = await _world(rt)
    subject = topology.telemetry_subject("orgb", b1)
    before = await _snapshot(rt, topology.STREAM_TELEMETRY, subject, b1)
    forged = msgspec.json.decode(telemetry(battery=1.0))
    try:
        # The device may write its own key (as it may publish its own telemetry): any JSON it likes.
        await nc.request(f"{STATE_PREFIX}.{a1}.forged", msgspec.json.encode(forged), timeout=2)
        await nc.publish(f"$JS.API.DIRECT.GET.{STATE_STREAM}.{STATE_PREFIX}.{a1}.forged", b"", reply=subject)
        await nc.flush()
        await _assert_rejected(rt, topology.STREAM_TELEMETRY, subject, before, b1)
        assert await _battery(rt, b1) == 55.0
    finally:
        await nc.close()


async def test_an_api_response_redirected_into_another_organisation_is_dead_lettered(make_runtime: Any) -> None:
    """Attack (2'): ``$JS.API.INFO`` (allowed to devices) answered into ``orgb``'s telemetry."""
    rt: Runtime = await make_runtime(nats_url="", nats_port=-1)
    _a1, b1, nc = await _world(rt)
    subject = topology.telemetry_subject("orgb", b1)
    before = await _snapshot(rt, topology.STREAM_TELEMETRY, subject, b1)
    try:
        await nc.publish("$JS.API.INFO", b"", reply=subject)
        await nc.flush()
        await _assert_rejected(rt, topology.STREAM_TELEMETRY, subject, before, b1)
    finally:
        await nc.close()


async def test_a_device_s_own_telemetry_is_not_mistaken_for_a_server_reply(make_runtime: Any) -> None:
    """The guard's shapes are narrow: telemetry with ``stream``/``seq``/``error`` fields still applies."""
    rt: Runtime = await make_runtime(nats_url="", nats_port=-1)
    a1, _b1, nc = await _world(rt)
    try:
        body = telemetry(battery=33.0, stream="video", seq=4, error={"code": 1})
        js = nc.jetstream(timeout=2)
        await js.publish(topology.telemetry_subject("orga", a1), body)
        await eventually(_has_battery(rt, a1, 33.0), what="own telemetry applied")
        assert _injections(rt) == 0
    finally:
        await nc.close()


@pytest.mark.parametrize(
    ("data", "headers", "reply"),
    [
        (b'{"stream":"CONSTELLATION_TELEMETRY","seq":5}', None, True),
        (b'{"stream":"KV_X","seq":5,"duplicate":true,"domain":"d"}', None, True),
        (b'{"type":"io.nats.jetstream.api.v1.account_info_response","memory":0}', None, True),
        (b'{"error":{"code":503,"err_code":10077,"description":"no space"}}', None, True),
        (b'{"power":{"voltage":1}}', {"Nats-Stream": "KV_X", "Nats-Sequence": "3"}, True),
        (b'{"power":{"voltage":1}}', {"Nats-Num-Pending": "0"}, True),
        (b'{"stream":"video","seq":1,"position":{}}', None, False),  # telemetry that has such fields
        (b'{"error":{"code":1},"power":{}}', None, False),
        (b'{"type":"detection"}', None, False),
        (b'{"power":{"voltage":1}}', {"Nats-Msg-Id": "x"}, False),
        (b"", None, False),
        (b'{"stream":', None, False),  # not JSON: left to the worker's own error
    ],
)
def test_server_reply_shapes(data: bytes, headers: dict[str, str] | None, reply: bool) -> None:
    """What the guard takes for a server reply, and what it leaves to the workers."""
    msg = Msg(_client=None, subject="constellation.telemetry.orga.a-0", data=data, headers=headers)  # type: ignore[arg-type]
    assert server_reply(msg) is reply
