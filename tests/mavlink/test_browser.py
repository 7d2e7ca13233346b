"""Acceptance 2 and 5 in Debian's Chromium: arm → takeoff → goto → RTL from the console with the hold gesture (touch
and mouse), then a group RTL of three vehicles from the fleet table; MAVLink checked on the emulators' side."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest

from app.runtime import Runtime
from services.mavlink import protocol
from services.mavlink.emulator import Emulator
from tests.browser.conftest import CHROMIUM, FLAGS, PageLog, sign_in, wait_js
from tests.conftest import LiveServer
from tests.helpers import eventually

pytestmark = [pytest.mark.browser, pytest.mark.slow]
PASSWORD = "mavlink browser password"
M = protocol.MAV


async def _hold(page: Any, selector: str, command: str, *, touch: bool) -> None:
    """Press and hold an element (a finger through CDP touch events, or the mouse) until the page has confirmed the
    gesture, then let go; the hold must have lasted the page's HOLD_MS.

    Letting go only after the confirmation is what a person does, and what makes this deterministic: a release
    after a fixed time could reach a busy page before its hold timer did (Chromium runs input before timers), and the
    page would rightly call that "released too early" and send nothing.
    """
    hold_s = await page.evaluate("window.OverwatchConfirm.HOLD_MS") / 1000
    await page.locator(selector).hover()  # scrolled into view and stable: the press lands on the button
    box = await page.locator(selector).bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    confirmed = (
        "(document.querySelector('.hold-hint') || {textContent: ''}).textContent"
        f".includes('Confirmed: sending {command}')"
        " || (document.querySelector('.flash-ok') || {textContent: ''}).textContent"
        f".includes('Sent: {command}')"
    )
    cdp = await page.context.new_cdp_session(page) if touch else None
    pressed = time.monotonic()
    if cdp is not None:
        await cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y, "id": 1}]})
    else:
        await page.mouse.down()
    try:
        hint = "(document.querySelector('.hold-hint') || {textContent: ''}).textContent"
        await wait_js(page, confirmed, timeout=10.0, what=f"the {command} hold confirmed (hint: see page)")
        held = time.monotonic() - pressed
        assert held >= hold_s, f"{command} confirmed after {held:.2f}s, before the {hold_s:.1f}s hold"
    except AssertionError:
        raise AssertionError(f"{command} hold not confirmed; the hint says {await page.evaluate(hint)!r}") from None
    finally:
        if cdp is not None:
            await cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        else:
            await page.mouse.up()


async def _sent(page: Any, command: str) -> None:
    """The form's answer has landed (its flash names the command): the next command starts from a fresh form."""
    await wait_js(
        page,
        f"(document.querySelector('.flash-ok') || {{textContent: ''}}).textContent.includes('Sent: {command}')",
        timeout=20.0,
    )


def _sent_once(vehicle: Emulator) -> list[Any]:
    """The commands the vehicle received, without MAVLink retransmissions (``confirmation`` > 0)."""
    return [r for r in vehicle.received if r.confirmation == 0]


def _latest(entity: str) -> str:
    return f"(document.querySelector('#command-list-{entity} li') || {{textContent: ''}}).textContent"


async def test_console_flies_a_vehicle_and_returns_three(
    browser: Any, runtime: Runtime, live_server: LiveServer, make_bridge: Any, make_vehicle: Any, tmp_path: Path
) -> None:
    assert Path(CHROMIUM).exists() and "--headless=new" in FLAGS
    bridge = await make_bridge()
    lead: Emulator = await make_vehicle(bridge, sysid=1, climb_rate=8.0, speed=30.0)
    wingmen: list[Emulator] = [await make_vehicle(bridge, sysid=s) for s in (2, 3)]
    for w in wingmen:
        w.airborne(altitude=30.0)
    await runtime.services.users.create("tests", "pilot@example.com", "admin", [], PASSWORD)
    context = await browser.new_context(viewport={"width": 1200, "height": 900}, has_touch=True)
    page = await context.new_page()
    log = PageLog()
    page.on(
        "console", lambda m: log.errors.append(f"{m.text} @ {m.location} on {page.url}") if m.type == "error" else None
    )
    page.on("pageerror", lambda e: log.errors.append(str(e)))
    try:
        await sign_in(page, live_server.url, "pilot@example.com", PASSWORD)
        await eventually(lambda: runtime.services.console.card("mav-1"), what="mav-1 registered")
        await page.goto(f"{live_server.url}/entities/mav-1")
        await page.wait_for_selector(".conn.is-live")
        await wait_js(page, "document.querySelector('#entity-readiness-mav-1 .readiness').textContent === 'Ready'")
        send = "form.command-form button[type=submit]"

        # Arm: a tap is not enough (nothing is sent), holding with a finger is.
        await page.select_option("#cmd", "arm")
        assert (await page.text_content(send)) == "Hold to arm"
        await page.click(send)
        # The page stopped the submission itself (the hint says so) and sent nothing: no request in flight,
        # no command recorded on the server, nothing at the vehicle.
        await wait_js(page, "document.querySelector('.hold-hint').textContent.includes('Hold the button')")
        assert await page.evaluate("document.querySelector('.htmx-request') === null")
        assert (await runtime.services.commands.list_for("org1", "mav-1", 10, 0))[1] == 0
        assert not lead.received
        await _hold(page, send, "arm", touch=True)
        await _sent(page, "arm")
        hint = await page.text_content(".hold-hint")
        await wait_js(
            page,
            f"{_latest('mav-1')}.includes('arm') && {_latest('mav-1')}.includes('completed')",
            what=f"arm completed (hint {hint!r}, vehicle got {[r.name for r in lead.received]})",
        )
        await wait_js(page, "document.querySelector('#entity-readiness-mav-1 .readiness').textContent === 'Armed'")

        # Takeoff (mouse hold): accepted with IN_PROGRESS while it climbs, then completed; Flying.
        await page.select_option("#cmd", "takeoff")
        await page.fill("#cmd-alt", "16")
        await _hold(page, send, "takeoff", touch=False)
        try:
            await _sent(page, "takeoff")
        except AssertionError:
            flash = await page.evaluate(
                "[...document.querySelectorAll('.flash, .flash-ok, .flash-error, .error')]"
                " .map(e => e.className + ':' + e.textContent.trim()).join(' | ')"
            )
            raise AssertionError(f"takeoff not sent; page says {flash!r}") from None
        await wait_js(
            page,
            f"{_latest('mav-1')}.includes('IN_PROGRESS') && {_latest('mav-1')}.includes('accepted')",
            what=f"takeoff in progress (vehicle got {[r.name for r in lead.received]}, acks {lead.acks})",
        )
        await wait_js(page, f"{_latest('mav-1')}.includes('takeoff') && {_latest('mav-1')}.includes('completed')")
        await wait_js(page, "document.querySelector('#entity-readiness-mav-1 .readiness').textContent === 'Flying'")

        # Goto and RTL need no hold: a click sends them.
        await page.select_option("#cmd", "goto")
        assert (await page.text_content(send)) == "Send"
        await page.fill("#cmd-lat", "37.4284")
        await page.fill("#cmd-lon", "-122.1690")
        await page.fill("#cmd-alt", "20")
        await page.click(send)
        await _sent(page, "goto")
        await wait_js(page, f"{_latest('mav-1')}.includes('goto') && {_latest('mav-1')}.includes('completed')")
        await page.select_option("#cmd", "rtl")
        await page.click(send)
        await _sent(page, "rtl")
        await wait_js(page, f"{_latest('mav-1')}.includes('rtl') && {_latest('mav-1')}.includes('completed')")
        await wait_js(page, "document.querySelector('#entity-readiness-mav-1 .readiness').textContent === 'Returning'")

        # On the vehicle's side, each is the MAVLink command MAVLink specifies.
        # Each command once; a copy the bridge sent again because an ACK was late (MAVLink's retransmission,
        # ``confirmation`` counting up) is the same command, not another one.
        assert all(r.confirmation > 0 for r in lead.received if r not in _sent_once(lead)), lead.received
        names = [r.name for r in _sent_once(lead)]
        assert names == [
            "MAV_CMD_COMPONENT_ARM_DISARM",
            "MAV_CMD_DO_SET_MODE",
            "MAV_CMD_NAV_TAKEOFF",
            "MAV_CMD_DO_REPOSITION",
            "MAV_CMD_NAV_RETURN_TO_LAUNCH",
        ]
        arm, mode, takeoff, goto, rtl = _sent_once(lead)
        assert arm.kind == "COMMAND_LONG" and arm.params[:2] == (1.0, 0.0)
        assert mode.params[:2] == (float(M.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED), 4.0)  # GUIDED
        assert takeoff.kind == "COMMAND_LONG" and takeoff.params[6] == 16.0
        assert goto.kind == "COMMAND_INT" and goto.frame == M.MAV_FRAME_GLOBAL_RELATIVE_ALT
        assert (goto.params[4], goto.params[5], goto.params[6]) == (374284000.0, -1221690000.0, 20.0)
        assert math.isnan(goto.params[3]) and rtl.kind == "COMMAND_LONG"

        # The fleet table: tick three rows (the ticks survive live row updates), RTL all selected.
        lead.airborne(altitude=30.0)  # back over the field, whether or not its first RTL has landed it yet
        await page.goto(f"{live_server.url}/fleet")
        await page.wait_for_selector(".conn.is-live")
        await page.check("#select-mav-2")
        await page.check("#select-all")  # the header box ticks every row
        # Rows are replaced by live updates (10 per second): wait until each of the three has been replaced.
        rows = "[1, 2, 3].map(n => document.getElementById('row-mav-' + n))"
        await page.evaluate(f"{rows}.forEach(row => {{ row.dataset.ticked = '1'; }})")
        await wait_js(page, f"{rows}.every(row => row && !row.dataset.ticked)", what="every row replaced by an update")
        assert await page.evaluate("document.querySelectorAll('.select-row:checked').length") == 3
        await page.click("#group-commands button[value=rtl]")
        await wait_js(page, "document.querySelectorAll('#group-result li[data-command-id]').length === 3")
        for sysid in (1, 2, 3):
            await wait_js(
                page,
                f"(document.querySelector('#row-mav-{sysid} .last-command') || {{textContent: ''}})"
                ".textContent.includes('rtl · completed')",
            )
        await wait_js(page, "document.querySelectorAll('.readiness-returning').length === 3")
        assert [r.name for w in wingmen for r in _sent_once(w)] == ["MAV_CMD_NAV_RETURN_TO_LAUNCH"] * 2
        assert [r.name for r in _sent_once(lead)].count("MAV_CMD_NAV_RETURN_TO_LAUNCH") == 2
        assert not log.errors, log.errors
        # Last: Playwright's screenshots touch the page's styles, which the strict CSP then reports.
        await page.screenshot(path=str(tmp_path / "fleet-group-rtl.png"), full_page=True)
    finally:
        await context.close()
