"""Command lifecycle: queued → delivered → accepted → completed | failed | expired."""

from __future__ import annotations

import asyncio
from typing import Any

from app.runtime import Runtime
from db import commands as commands_db
from services.schemas import CommandCreate
from tests.helpers import eventually, seed, state
from workers.simulator import Simulator, make_fleet


async def _status(rt: Runtime, command_id: str, want: str) -> bool:
    row = await commands_db.get_command(rt.db, command_id)
    return row is not None and row.status == want


async def _start_sim(rt: Runtime, ids: list[str]) -> tuple[Simulator, asyncio.Event, asyncio.Task[None]]:
    assert rt.nc is not None
    sim = Simulator(rt.nc, make_fleet("org1", [(i, "aircraft_multirotor") for i in ids], (37.0, -122.0)), rate_hz=5)
    stop = asyncio.Event()
    task = asyncio.create_task(sim.run(stop))
    await eventually(lambda: all((rt.services.state_cache.get(i) or {}).get("is_live") for i in ids), what="live")
    return sim, stop, task


async def test_command_to_live_entity_completes_and_changes_behaviour(runtime: Runtime) -> None:
    (e0,) = await seed(runtime, entities=1)
    sim, stop, task = await _start_sim(runtime, [e0])
    try:
        view = await runtime.services.commands.send(
            "org1", e0, CommandCreate(command="set_mode", params={"mode": "LOITER"})
        )
        assert view.status in ("queued", "delivered")
        await eventually(lambda: _status(runtime, view.command_id, "completed"), what="completed")
        # The state's ``commands`` scope follows the journal (written by the command projection, not by the ack).
        doc = await eventually(
            lambda: _mode(runtime, e0, "LOITER", view.command_id), what="entity in LOITER, its command completed"
        )
        recent = doc["commands"]["recent"]
        assert recent[0]["command_id"] == view.command_id and recent[0]["status"] == "completed"
        here = doc["position"]["global"]
        target = {"latitude": here["latitude"] + 0.0003, "longitude": here["longitude"]}  # ~33 m north
        goto = await runtime.services.commands.send("org1", e0, CommandCreate(command="goto", params=target))
        await eventually(lambda: _status(runtime, goto.command_id, "accepted"), what="goto accepted")
        await eventually(lambda: _status(runtime, goto.command_id, "completed"), timeout=30, what="goto completed")
        rejected = await runtime.services.commands.send("org1", e0, CommandCreate(command="self_destruct"))
        await eventually(lambda: _status(runtime, rejected.command_id, "failed"), what="unsupported → failed")
    finally:
        stop.set()
        await task


async def _mode(rt: Runtime, entity_id: str, mode: str, completed: str = "") -> dict[str, Any] | None:
    doc = await state(rt, entity_id)
    if not doc or (doc.get("vehicle_status") or {}).get("mode") != mode or not doc.get("commands"):
        return None
    recent = doc["commands"].get("recent") or [{}]
    if completed and (recent[0].get("command_id"), recent[0].get("status")) != (completed, "completed"):
        return None
    return doc


async def test_offline_entity_keeps_command_queued_until_it_returns(runtime: Runtime) -> None:
    (e0,) = await seed(runtime, entities=1)
    view = await runtime.services.commands.send("org1", e0, CommandCreate(command="hold"))
    assert view.status == "queued"
    # Only the entity's return dispatches it; an expiry pass meanwhile leaves it queued.
    await runtime.services.commands.expire_due()
    assert await _status(runtime, view.command_id, "queued")
    sim, stop, task = await _start_sim(runtime, [e0])
    try:
        await eventually(lambda: _status(runtime, view.command_id, "completed"), what="delivered on return")
        row = await commands_db.get_command(runtime.db, view.command_id)
        assert row is not None and row.delivered_at
    finally:
        stop.set()
        await task


async def test_unanswered_command_expires(runtime: Runtime) -> None:
    (e0,) = await seed(runtime, entities=1)
    view = await runtime.services.commands.send("org1", e0, CommandCreate(command="rtl", ttl_s=0.5))
    await eventually(lambda: _status(runtime, view.command_id, "expired"), timeout=5, what="expired")


async def test_acks_never_move_a_command_backwards(runtime: Runtime) -> None:
    (e0,) = await seed(runtime, entities=1)
    view = await runtime.services.commands.send("org1", e0, CommandCreate(command="land"))
    service = runtime.services.commands
    assert await service.acknowledge(view.command_id, e0, "completed", "done", org_id="org1") is not None
    assert await service.acknowledge(view.command_id, e0, "accepted", "late", org_id="org1") is None
    assert await service.acknowledge(view.command_id, e0, "failed", "late", org_id="org1") is None
    assert await _status(runtime, view.command_id, "completed")


async def test_a_command_sent_as_its_entity_comes_back_is_dispatched_once(runtime: Runtime) -> None:
    """The entity's return dispatches its queued commands: one just stored but not yet journalled by
    ``send`` is among them. The dispatcher journals it first; ``send`` then reports that outcome
    instead of failing (the interleaving is forced here at the audit step between the two)."""
    (e0,) = await seed(runtime, entities=1)
    service = runtime.services.commands
    record = service.audit.record
    dispatched: list[int] = []

    async def audit_then_come_back(*args: Any, **kwargs: Any) -> None:
        await record(*args, **kwargs)
        if args[1] == "command.send":
            dispatched.append(await service.dispatch_queued(e0))

    service.audit.record = audit_then_come_back  # type: ignore[method-assign]
    try:
        view = await service.send("org1", e0, CommandCreate(command="hold"))
    finally:
        service.audit.record = record  # type: ignore[method-assign]
    assert dispatched == [1]
    assert view.status == "delivered"
    seq, last = await service.last_record(await commands_db.get_command(runtime.db, view.command_id))  # type: ignore[arg-type]
    assert last is not None and last.row.status == "delivered" and seq
