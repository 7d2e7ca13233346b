"""Our command vocabulary → MAVLink commands, and MAVLink's command protocol.

``translate`` turns ``arm``, ``takeoff{altitude}``, ``goto{…}`` … into the MAVLink
command(s) the vehicle's autopilot expects (``COMMAND_LONG``, ``COMMAND_INT`` for
``MAV_CMD_DO_REPOSITION``, ``MAV_CMD_DO_SET_MODE`` for modes). ``CommandProtocol``
sends one and follows MAVLink's command protocol: resend (``confirmation`` + 1) until a
``COMMAND_ACK`` arrives or the retries are spent; after ``IN_PROGRESS`` wait for the
final result. The bridge maps the outcome onto our lifecycle with MAVLink's word kept:
``ACCEPTED`` → completed, ``IN_PROGRESS`` → accepted (with progress), any other result
→ failed with that word, no ACK → failed "no response".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from services.mavlink import protocol
from services.mavlink.vehicle import Vehicle

M = protocol.MAV
NAN = float("nan")


class Untranslatable(Exception):
    """The command has no MAVLink form for this vehicle (reported as ``UNSUPPORTED``)."""


class MavCommand(msgspec.Struct, frozen=True, kw_only=True):
    """One MAVLink command to send: ``COMMAND_LONG`` (params 1–7) or ``COMMAND_INT`` (x/y as 1e7 deg)."""

    command: int
    params: tuple[float, float, float, float, float, float, float] = (0, 0, 0, 0, 0, 0, 0)
    use_int: bool = False
    frame: int = 0
    note: str = ""  # e.g. the mode name, for the detail

    @property
    def label(self) -> str:
        """``MAV_CMD_DO_SET_MODE GUIDED``."""
        name = protocol.command_name(self.command)
        return f"{name} {self.note}" if self.note else name

    def message(self, target_system: int, target_component: int, attempt: int) -> Any:
        """The pymavlink message for this attempt (``confirmation`` counts resends of COMMAND_LONG)."""
        p = self.params
        if self.use_int:
            return M.MAVLink_command_int_message(
                target_system,
                target_component,
                self.frame,
                self.command,
                0,  # current
                0,  # autocontinue
                p[0],
                p[1],
                p[2],
                p[3],
                int(round(p[4] * 1e7)),
                int(round(p[5] * 1e7)),
                p[6],
            )
        return M.MAVLink_command_long_message(target_system, target_component, self.command, min(attempt, 255), *p)


def _mode(v: Vehicle, name: str) -> MavCommand:
    numbers = protocol.mode_numbers(v.autopilot, v.mav_type, name)
    if numbers is None:
        known = ", ".join(protocol.mode_names(v.autopilot, v.mav_type)) or "none known"
        raise Untranslatable(f"mode {name} does not exist on this vehicle (modes: {known})")
    custom, sub = numbers
    return MavCommand(
        command=M.MAV_CMD_DO_SET_MODE,
        params=(float(protocol.MODE_FLAG_CUSTOM), float(custom), float(sub), 0, 0, 0, 0),
        note=name.upper(),
    )


def _hold_mode(v: Vehicle) -> str:
    if v.autopilot == protocol.AUTOPILOT_PX4:
        return "LOITER"
    return "HOLD" if protocol.is_ground(v.mav_type) else "LOITER"


def _auto_mode(v: Vehicle) -> str:
    return "MISSION" if v.autopilot == protocol.AUTOPILOT_PX4 else "AUTO"


def _amsl(v: Vehicle, relative: float) -> float:
    """PX4 wants altitudes above mean sea level: home (or the ground under us) + relative."""
    if v.home_alt_msl is not None:
        return v.home_alt_msl + relative
    if v.alt_msl is not None and v.alt_rel is not None:
        return v.alt_msl - v.alt_rel + relative
    return NAN  # unknown: PX4 then uses its default


def translate(command: str, params: dict[str, Any], v: Vehicle) -> list[MavCommand]:
    """The MAVLink command(s) for one of our commands, for this vehicle's autopilot and type."""
    px4 = v.autopilot == protocol.AUTOPILOT_PX4
    if command == "arm":
        return [MavCommand(command=M.MAV_CMD_COMPONENT_ARM_DISARM, params=(1, 0, 0, 0, 0, 0, 0))]
    if command == "disarm":
        force = protocol.FORCE_DISARM_MAGIC if params.get("force") is True else 0
        note = "forced" if force else ""
        return [MavCommand(command=M.MAV_CMD_COMPONENT_ARM_DISARM, params=(0, float(force), 0, 0, 0, 0, 0), note=note)]
    if command == "takeoff":
        if protocol.is_ground(v.mav_type):
            raise Untranslatable("a ground vehicle cannot take off")
        altitude = float(params.get("altitude", 30.0))
        if px4:
            # PX4: param7 is AMSL; NaN position means "here".
            amsl = _amsl(v, altitude)
            takeoff = MavCommand(
                command=M.MAV_CMD_NAV_TAKEOFF, params=(NAN, 0, 0, NAN, NAN, NAN, amsl), note=f"{altitude:g} m"
            )
            return [takeoff]
        steps = []
        if v.mode != "GUIDED" and not protocol.is_plane(v.mav_type):
            # ArduCopter takes off only in GUIDED (what QGroundControl switches to first).
            steps.append(_mode(v, "GUIDED"))
        steps.append(
            MavCommand(command=M.MAV_CMD_NAV_TAKEOFF, params=(0, 0, 0, 0, 0, 0, altitude), note=f"{altitude:g} m")
        )
        return steps
    if command == "land":
        here = NAN if px4 else 0.0  # "land where you are"
        return [MavCommand(command=M.MAV_CMD_NAV_LAND, params=(0, 0, 0, NAN, here, here, 0))]
    if command == "rtl":
        return [MavCommand(command=M.MAV_CMD_NAV_RETURN_TO_LAUNCH)]
    if command == "goto":
        lat, lon = float(params["latitude"]), float(params["longitude"])
        wanted = params.get("altitude")
        z: float
        if px4:
            frame = M.MAV_FRAME_GLOBAL
            z = _amsl(v, float(wanted)) if wanted is not None else (v.alt_msl if v.alt_msl is not None else NAN)
        else:
            frame = M.MAV_FRAME_GLOBAL_RELATIVE_ALT
            z = float(wanted) if wanted is not None else (v.alt_rel if v.alt_rel is not None else 0.0)
        return [
            MavCommand(
                command=M.MAV_CMD_DO_REPOSITION,
                params=(-1, float(protocol.REPOSITION_CHANGE_MODE), 0, NAN, lat, lon, z),
                use_int=True,
                frame=frame,
                note=f"{lat:.6f},{lon:.6f}",
            )
        ]
    if command == "set_mode":
        return [_mode(v, str(params["mode"]))]
    if command == "set_speed":
        speed_type = 0.0 if protocol.is_plane(v.mav_type) else 1.0  # airspeed for planes, ground speed otherwise
        speed = float(params["speed"])
        return [MavCommand(command=M.MAV_CMD_DO_CHANGE_SPEED, params=(speed_type, speed, -1, 0, 0, 0, 0))]
    if command == "hold":
        return [_mode(v, _hold_mode(v))]
    if command == "resume":
        return [_mode(v, _auto_mode(v))]
    raise Untranslatable(f"no MAVLink form for the command {command!r}")


class Outcome(msgspec.Struct, frozen=True):
    """How one MAVLink command ended: a ``MAV_RESULT`` or None (no response), and the detail."""

    result: int | None
    detail: str
    attempts: int

    @property
    def accepted(self) -> bool:
        """``MAV_RESULT_ACCEPTED``."""
        return self.result == protocol.RESULT_ACCEPTED


Sender = Callable[[Vehicle, Any], None]
Progress = Callable[[str], Awaitable[None]]


class CommandProtocol:
    """Sends commands and matches ``COMMAND_ACK``s (per vehicle and command id, one at a time)."""

    def __init__(self, send: Sender, timeout: float, retries: int, progress_timeout: float) -> None:
        self.send = send
        self.timeout = timeout
        self.retries = retries
        self.progress_timeout = progress_timeout
        self._waiting: dict[tuple[int, int], asyncio.Queue[Any]] = {}
        self._locks: dict[tuple[int, int], asyncio.Lock] = {}
        self.sent = 0
        self.resent = 0
        self.acks = 0
        self.unexpected_acks = 0

    def on_ack(self, v: Vehicle, msg: Any) -> None:
        """A ``COMMAND_ACK`` from a vehicle: hand it to the command waiting for it."""
        self.acks += 1
        queue = self._waiting.get((v.sysid, msg.command))
        if queue is None:
            self.unexpected_acks += 1  # a late ACK of a command we gave up on, or someone else's
            return
        queue.put_nowait(msg)

    async def run(self, v: Vehicle, step: MavCommand, progress: Progress) -> Outcome:
        """Send ``step`` and follow it to a final result (or "no response")."""
        key = (v.sysid, step.command)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            queue: asyncio.Queue[Any] = asyncio.Queue()
            self._waiting[key] = queue
            try:
                return await self._exchange(v, step, queue, progress)
            finally:
                self._waiting.pop(key, None)

    async def _exchange(self, v: Vehicle, step: MavCommand, queue: asyncio.Queue[Any], progress: Progress) -> Outcome:
        attempts = 0
        for attempt in range(self.retries + 1):
            attempts = attempt + 1
            self.send(v, step.message(v.sysid, v.compid, attempt))
            if attempt:
                self.resent += 1
            else:
                self.sent += 1
            deadline = time.monotonic() + self.timeout
            while True:
                try:
                    ack = await asyncio.wait_for(queue.get(), max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    break  # resend
                if ack.result == protocol.RESULT_IN_PROGRESS:
                    return await self._in_progress(v, step, ack, queue, progress, attempts)
                return Outcome(ack.result, _word(ack.result), attempts)
        return Outcome(None, f"no response after {attempts} attempt{'s' if attempts != 1 else ''}", attempts)

    async def _in_progress(
        self, v: Vehicle, step: MavCommand, ack: Any, queue: asyncio.Queue[Any], progress: Progress, attempts: int
    ) -> Outcome:
        # The vehicle has it: no more resends (MAVLink's command protocol), only further ACKs.
        while True:
            await progress(_progress_text(ack))
            try:
                ack = await asyncio.wait_for(queue.get(), self.progress_timeout)
            except TimeoutError:
                return Outcome(None, f"no response (no result {self.progress_timeout:g}s after IN_PROGRESS)", attempts)
            if ack.result != protocol.RESULT_IN_PROGRESS:
                return Outcome(ack.result, _word(ack.result), attempts)


def _word(result: int) -> str:
    return protocol.RESULT_WORDS.get(result, f"MAV_RESULT({result})")


def _progress_text(ack: Any) -> str:
    value = getattr(ack, "progress", 255)
    return f"IN_PROGRESS {value}%" if isinstance(value, int) and 0 <= value <= 100 else "IN_PROGRESS"
