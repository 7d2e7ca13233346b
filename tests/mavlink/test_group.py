"""Acceptance 5 and console safety: a group RTL of three vehicles is three commands, three audit entries, three results.

The fleet table's form posts to /fleet/commands (here over HTTP with an admin's API key, as htmx would); each selected
vehicle gets its own command through the command service, audited, carried out by its emulated autopilot.
"""

from __future__ import annotations

from typing import Any

import httpx
from bs4 import BeautifulSoup

from app.runtime import Runtime
from db import audit as audit_db
from db import commands as commands_db
from services.mavlink.emulator import Emulator
from tests.helpers import eventually

HX = {"HX-Request": "true"}


async def _finished(runtime: Runtime, command_ids: list[str]) -> list[str] | None:
    rows = [await commands_db.get_command(runtime.db, c) for c in command_ids]
    statuses = [r.status if r else "" for r in rows]
    return statuses if all(s in ("completed", "failed") for s in statuses) else None


async def test_group_rtl_of_three_vehicles(
    runtime: Runtime, make_bridge: Any, make_vehicle: Any, client: httpx.AsyncClient
) -> None:
    bridge = await make_bridge()
    vehicles: list[Emulator] = [await make_vehicle(bridge, sysid=s) for s in (21, 22, 23)]
    for v in vehicles:
        v.airborne(altitude=25.0)
    ids = ["mav-21", "mav-22", "mav-23"]
    await eventually(
        lambda: all((runtime.services.console.card(i) or _NoCard).readiness == "flying" for i in ids),
        what="three flying vehicles",
    )
    fleet = BeautifulSoup((await client.get("/fleet?show=flying")).text, "html.parser")
    assert [r["id"] for r in fleet.select("tr[id^=row-]")] == [f"row-{i}" for i in ids]
    form = fleet.select_one("form#group-commands")
    assert form is not None and form["data-confirm-commands"] == "arm disarm takeoff land"
    assert len(fleet.select("input.select-row[form=group-commands]")) == 3

    before = await audit_db.count_audit(runtime.db, action="command.send")
    response = await client.post("/fleet/commands", data={"command": "rtl", "entity_id": ids}, headers=HX)
    assert response.status_code == 200, response.text
    lines = BeautifulSoup(response.text, "html.parser").select("li[data-command-id]")
    assert [li["data-entity"] for li in lines] == ids
    command_ids = [li["data-command-id"] for li in lines]
    assert len(set(command_ids)) == 3 and all(command_ids)
    statuses = await eventually(lambda: _finished(runtime, command_ids), what="three results")
    assert statuses == ["completed"] * 3
    entries = await audit_db.query_audit(runtime.db, action="command.send", limit=10)
    assert await audit_db.count_audit(runtime.db, action="command.send") == before + 3
    assert sorted(e.target for e in entries[:3]) == [f"{i}:rtl" for i in ids]
    assert all(e.outcome == "success" for e in entries[:3])
    for v in vehicles:
        assert [r.name for r in v.received] == ["MAV_CMD_NAV_RETURN_TO_LAUNCH"]
    await eventually(
        lambda: all((runtime.services.console.card(i) or _NoCard).readiness == "returning" for i in ids),
        what="Returning in the fleet column",
    )
    fleet = BeautifulSoup((await client.get("/fleet")).text, "html.parser")
    assert all("rtl · completed" in fleet.select_one(f"#row-{i} .last-command").get_text() for i in ids)

    # Land moves vehicles: without the confirmation it is refused (nothing sent), with it each vehicle gets one.
    recorded = [await commands_db.count_commands(runtime.db, i) for i in ids]
    refused = await client.post("/fleet/commands", data={"command": "land", "entity_id": ids[:2]}, headers=HX)
    assert refused.status_code == 422 and "confirmation" in refused.text
    # Refused before anything was sent: a command is recorded before it is published, and before the answer.
    assert [await commands_db.count_commands(runtime.db, i) for i in ids] == recorded
    assert all(len(v.received) == 1 for v in vehicles)
    landed = await client.post(
        "/fleet/commands", data={"command": "land", "entity_id": ids[:2], "confirm": "yes"}, headers=HX
    )
    assert landed.status_code == 200
    await eventually(lambda: all(len(v.received) == 2 for v in vehicles[:2]), what="land sent to the two")
    wrong = await client.post("/fleet/commands", data={"command": "arm", "entity_id": ids}, headers=HX)
    assert wrong.status_code == 422 and "cannot be sent to a selection" in wrong.text


async def test_console_refuses_unconfirmed_arm_and_non_admin_force(
    runtime: Runtime, make_bridge: Any, make_vehicle: Any, client: httpx.AsyncClient
) -> None:
    bridge = await make_bridge()
    vehicle: Emulator = await make_vehicle(bridge, sysid=31)
    await eventually(lambda: (runtime.services.state_cache.get("mav-31") or {}).get("is_live"), what="live")
    page = BeautifulSoup((await client.get("/entities/mav-31")).text, "html.parser")
    form = page.select_one("form.command-form")
    assert form is not None and form["data-confirm-commands"] == "arm disarm takeoff land"
    assert page.select_one("input[name=force]") is not None  # the fixture's key is an admin's
    url = "/entities/mav-31/commands"
    refused = await client.post(url, data={"command": "arm"}, headers=HX)
    assert refused.status_code == 422 and "needs a confirmation" in refused.text
    sent = await client.post(url, data={"command": "arm", "confirm": "yes"}, headers=HX)
    assert sent.status_code == 200 and "Sent: arm" in sent.text
    await eventually(lambda: vehicle.armed, what="armed")
    goto = await client.post(url, data={"command": "goto", "latitude": "37.43", "longitude": "-122.17"}, headers=HX)
    assert goto.status_code == 200  # needs no confirmation

    operator = await runtime.services.apikeys.create("tests", "op", ["read", "commands"], "org1")
    as_operator = {"Authorization": f"Bearer {operator.key}", **HX}
    page = BeautifulSoup((await client.get("/entities/mav-31", headers=as_operator)).text, "html.parser")
    assert page.select_one("input[name=force]") is None
    forced = await client.post(url, data={"command": "disarm", "confirm": "yes", "force": "yes"}, headers=as_operator)
    assert forced.status_code == 422 and "admin" in forced.text
    denied = await audit_db.query_audit(runtime.db, action="command.send", outcome="denied", limit=5)
    assert denied and denied[0].target == "mav-31:disarm"
    viewer = await runtime.services.apikeys.create("tests", "viewer", ["read"], "org1")
    as_viewer = {"Authorization": f"Bearer {viewer.key}", **HX}
    group = await client.post("/fleet/commands", data={"command": "rtl", "entity_id": ["mav-31"]}, headers=as_viewer)
    assert group.status_code == 403
    fleet = BeautifulSoup((await client.get("/fleet", headers=as_viewer)).text, "html.parser")
    assert fleet.select_one("form#group-commands") is None and fleet.select_one(".table-wrap.can-select") is None


class _NoCard:
    readiness = ""
