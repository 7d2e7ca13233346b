"""A MAVLink vehicle emulator (pymavlink over UDP) for the tests, the demo and trying the bridge.

It behaves like a small ArduCopter (or PX4, ``autopilot=AUTOPILOT_PX4``): standard
messages at realistic rates (HEARTBEAT 1 Hz, SYS_STATUS 2 Hz, GPS_RAW_INT 5 Hz,
GLOBAL_POSITION_INT and ATTITUDE 10 Hz, VFR_HUD 4 Hz, BATTERY_STATUS, HOME_POSITION and
EXTENDED_SYS_STATE 1 Hz, STATUSTEXT on events), simple flight physics, and MAVLink's
command protocol: arm/disarm, modes, takeoff (``IN_PROGRESS`` with progress while it
climbs, then ``ACCEPTED``), reposition, RTL, land, speed. Tests can make it answer any
``MAV_RESULT`` for a command (``results``), stay silent (``silent``), ignore the first
attempts (``drop_first``), fail its pre-arm checks, or stop its HEARTBEAT. Every command
it receives is recorded (``received``) with the fields MAVLink specifies.

Run one by hand::

    python -m services.mavlink.emulator --to 127.0.0.1:14550 --sysid 1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from services.mavlink import protocol
from services.mavlink.words import PREARM_BIT

log = logging.getLogger("overwatch.mavlink.emulator")

M = protocol.MAV
EARTH_R = 6_371_000.0  # metres
TICK = 0.02  # seconds between physics steps / send checks
PROGRESS_EVERY = 0.5  # seconds between IN_PROGRESS acks while a takeoff climbs


@dataclass
class Received:
    """One command as it arrived (COMMAND_LONG: params 1–7; COMMAND_INT: params 1–4, x, y, z)."""

    kind: str  # COMMAND_LONG | COMMAND_INT
    command: int
    params: tuple[float, ...]
    frame: int = 0
    confirmation: int = 0
    target_system: int = 0
    target_component: int = 0
    source_system: int = 0
    at: float = field(default_factory=time.monotonic)

    @property
    def name(self) -> str:
        """``MAV_CMD_NAV_TAKEOFF``."""
        return protocol.command_name(self.command)


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.emulator._datagram(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        log.debug("emulator socket: %s", exc)


class Emulator:
    """One emulated vehicle talking to a bridge at ``target`` (host, UDP port)."""

    def __init__(
        self,
        target: tuple[str, int],
        *,
        sysid: int = 1,
        compid: int = 1,
        autopilot: int = protocol.AUTOPILOT_ARDUPILOT,
        mav_type: int = M.MAV_TYPE_QUADROTOR,
        home: tuple[float, float, float] = (37.4275, -122.1697, 30.0),
        position_hz: float = 10.0,
        results: dict[int, int] | None = None,
        silent: set[int] | None = None,
        drop_first: dict[int, int] | None = None,
        in_progress: set[int] | None = None,
        prearm_ok: bool = True,
        mavlink1: bool = False,
        speed: float = 12.0,
        climb_rate: float = 4.0,
        battery: float = 96.0,
    ) -> None:
        self.target = target
        self.sysid, self.compid = sysid, compid
        self.autopilot, self.mav_type = autopilot, mav_type
        self.home = home
        self.results = dict(results or {})
        self.silent = set(silent or ())
        self.drop_first = dict(drop_first or {})
        self.in_progress = {M.MAV_CMD_NAV_TAKEOFF} if in_progress is None else set(in_progress)
        self.prearm_ok = prearm_ok
        self.mavlink1 = mavlink1
        self.speed, self.climb_rate = speed, climb_rate
        self.battery = battery
        self.rates = {
            "HEARTBEAT": 1.0,
            "SYS_STATUS": 2.0,
            "GPS_RAW_INT": 5.0,
            "GLOBAL_POSITION_INT": position_hz,
            "ATTITUDE": max(position_hz, 10.0),
            "VFR_HUD": 4.0,
            "BATTERY_STATUS": 1.0,
            "HOME_POSITION": 1.0,
            "EXTENDED_SYS_STATE": 1.0,
        }
        self.heartbeat = True
        self.first_heartbeat_at: float | None = None  # monotonic time of the first and last HEARTBEAT sent
        self.last_heartbeat_at: float | None = None
        self.received: list[Received] = []
        self.sent: dict[str, int] = {}
        self.acks: list[tuple[int, int, int]] = []  # (command, result, progress) we sent
        self.lat, self.lon, self.alt = home[0], home[1], 0.0  # alt relative to home (m)
        self.heading = 0.0
        self.ground_speed = 0.0
        self.climb = 0.0
        self.armed = False
        self.mode = "STABILIZE" if autopilot != protocol.AUTOPILOT_PX4 else "POSCTL"
        self.task = "ground"  # ground | takeoff | hover | goto | rtl | land | orbit
        self.target_pos: tuple[float, float] | None = None
        self.target_alt = 0.0
        self.takeoff_started_alt = 0.0
        self.sender = protocol.new_sender(sysid, compid)
        self.parser = protocol.new_parser()
        self.transport: asyncio.DatagramTransport | None = None
        self._task: asyncio.Task[None] | None = None
        self._next: dict[str, float] = {}
        self._boot = time.monotonic()
        self._takeoff_progress_at = 0.0
        self._texts: list[tuple[int, str]] = []
        self._open: set[int] = set()  # commands answered IN_PROGRESS whose final ACK is still to come
        self._gcs = 0  # system id of whoever sent the last command (the ACK's target_system)

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Open the UDP socket and start sending."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Socket(self), local_addr=("127.0.0.1", 0))
        self.transport = transport
        self._task = asyncio.create_task(self._loop(), name=f"mavlink-emulator-{self.sysid}")

    async def stop(self) -> None:
        """Stop sending and close the socket."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.transport is not None:
            self.transport.close()

    async def run(self, stopping: asyncio.Event) -> None:
        """Run until ``stopping`` is set."""
        await self.start()
        try:
            await stopping.wait()
        finally:
            await self.stop()

    @property
    def local_address(self) -> tuple[str, int]:
        """Where the emulator sends from (the bridge sees this peer)."""
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    def stop_heartbeat(self) -> None:
        """Go silent on HEARTBEAT (other messages continue, as a half-broken link would)."""
        self.heartbeat = False

    def resume_heartbeat(self) -> None:
        """Send HEARTBEAT again."""
        self.heartbeat = True
        self._next["HEARTBEAT"] = 0.0

    def airborne(self, altitude: float = 20.0, mode: str = "GUIDED", task: str = "hover") -> None:
        """Be armed and in the air already (``task`` ``orbit`` keeps moving): tests that need a flying vehicle."""
        self.armed, self.alt, self.mode, self.task = True, altitude, mode, task

    def statustext(self, severity: int, text: str) -> None:
        """Queue a STATUSTEXT (sent on the next tick)."""
        self._texts.append((severity, text))

    def send_raw(self, data: bytes) -> None:
        """Send arbitrary bytes from the emulator's address (malformed-frame tests)."""
        if self.transport is not None:
            self.transport.sendto(data, self.target)

    def commands_named(self, name: str) -> list[Received]:
        """Received commands of one ``MAV_CMD_*`` name."""
        return [r for r in self.received if r.name == name]

    # ------------------------------------------------------------ sending
    def _send(self, msg: Any) -> None:
        if self.transport is None:
            return
        self.transport.sendto(protocol.pack(self.sender, msg, mavlink1=self.mavlink1), self.target)
        kind = msg.get_type()
        self.sent[kind] = self.sent.get(kind, 0) + 1
        if kind == "HEARTBEAT":
            self.last_heartbeat_at = time.monotonic()
            self.first_heartbeat_at = self.first_heartbeat_at or self.last_heartbeat_at

    async def _loop(self) -> None:
        last = time.monotonic()
        while True:
            now = time.monotonic()
            self._step(now - last)
            last = now
            self._send_due(now)
            await asyncio.sleep(TICK)

    def _send_due(self, now: float) -> None:
        for kind, rate in self.rates.items():
            if rate <= 0 or (kind == "HEARTBEAT" and not self.heartbeat):
                continue
            if now >= self._next.get(kind, 0.0):
                self._next[kind] = max(self._next.get(kind, now) + 1.0 / rate, now)
                self._send(self._message(kind, now))
        self._flush_texts()

    def _flush_texts(self) -> None:
        while self._texts:
            severity, text = self._texts.pop(0)
            self._send(M.MAVLink_statustext_message(severity, text.encode()[:50]))

    def _message(self, kind: str, now: float) -> Any:
        boot_ms = int((now - self._boot) * 1000) & 0xFFFFFFFF
        lat, lon = int(self.lat * 1e7), int(self.lon * 1e7)
        amsl_mm = int((self.home[2] + self.alt) * 1000)
        if kind == "HEARTBEAT":
            return M.MAVLink_heartbeat_message(
                self.mav_type, self.autopilot, self._base_mode(), self._custom_mode(), self._system_status(), 3
            )
        if kind == "SYS_STATUS":
            present = 0b1111111 | PREARM_BIT | (1 << 25)
            health = present if self.prearm_ok else present & ~PREARM_BIT
            return M.MAVLink_sys_status_message(
                present, present, health, 250, int(self._volts() * 1000), int(self._amps() * 100), int(self.battery),
                0, 0, 0, 0, 0, 0,
            )  # fmt: skip
        if kind == "GPS_RAW_INT":
            return M.MAVLink_gps_raw_int_message(
                int(now * 1e6), 3, lat, lon, amsl_mm, 80, 120, int(self.ground_speed * 100), int(self.heading * 100),
                14, 0, 900, 1500,
            )  # fmt: skip
        if kind == "GLOBAL_POSITION_INT":
            north, east = math.cos(math.radians(self.heading)), math.sin(math.radians(self.heading))
            return M.MAVLink_global_position_int_message(
                boot_ms, lat, lon, amsl_mm, int(self.alt * 1000), int(north * self.ground_speed * 100),
                int(east * self.ground_speed * 100), int(-self.climb * 100), int(self.heading * 100) % 36000,
            )  # fmt: skip
        if kind == "ATTITUDE":
            roll = 0.1 if self.ground_speed > 1 else 0.0
            return M.MAVLink_attitude_message(boot_ms, roll, -roll / 2, math.radians(self.heading), 0.0, 0.0, 0.0)
        if kind == "VFR_HUD":
            throttle = 0 if not self.armed else 45 if self.alt > 0.5 else 10
            return M.MAVLink_vfr_hud_message(
                self.ground_speed, self.ground_speed, int(self.heading) % 360, throttle, self.home[2] + self.alt,
                self.climb,
            )  # fmt: skip
        if kind == "BATTERY_STATUS":
            cell = int(self._volts() / 4 * 1000)
            voltages = [cell] * 4 + [65535] * 6
            return M.MAVLink_battery_status_message(
                0, 0, 0, 2900, voltages, int(self._amps() * 100), int((100 - self.battery) * 52), -1, int(self.battery)
            )
        if kind == "HOME_POSITION":
            return M.MAVLink_home_position_message(
                int(self.home[0] * 1e7),
                int(self.home[1] * 1e7),
                int(self.home[2] * 1000),
                0,
                0,
                0,
                [1, 0, 0, 0],
                0,
                0,
                0,
            )
        if kind == "EXTENDED_SYS_STATE":
            return M.MAVLink_extended_sys_state_message(0, self._landed_state())
        raise ValueError(kind)

    def _base_mode(self) -> int:
        base = int(protocol.MODE_FLAG_CUSTOM | M.MAV_MODE_FLAG_STABILIZE_ENABLED)
        if self.mode in ("GUIDED", "AUTO", "RTL", "LAND", "MISSION", "LOITER", "TAKEOFF"):
            base |= M.MAV_MODE_FLAG_GUIDED_ENABLED
        if self.armed:
            base |= protocol.MODE_FLAG_ARMED
        return base

    def _custom_mode(self) -> int:
        numbers = protocol.mode_numbers(self.autopilot, self.mav_type, self.mode) or (0, 0)
        if self.autopilot == protocol.AUTOPILOT_PX4:
            return protocol.px4_custom_mode(*numbers)
        return numbers[0]

    def _system_status(self) -> int:
        return int(M.MAV_STATE_ACTIVE if self.armed else M.MAV_STATE_STANDBY)

    def _landed_state(self) -> int:
        if self.alt <= 0.05:
            return int(M.MAV_LANDED_STATE_ON_GROUND)
        if self.task == "takeoff":
            return int(M.MAV_LANDED_STATE_TAKEOFF)
        if self.task == "land" or (self.task == "rtl" and self.target_pos is None):
            return int(M.MAV_LANDED_STATE_LANDING)
        return int(M.MAV_LANDED_STATE_IN_AIR)

    def _volts(self) -> float:
        return 14.0 + 2.8 * self.battery / 100

    def _amps(self) -> float:
        return 1.0 + (14.0 if self.alt > 0.1 else 0.0) + self.ground_speed * 0.5 if self.armed else 0.3

    # ------------------------------------------------------------ physics
    def _step(self, dt: float) -> None:
        self.climb = 0.0
        if self.task in ("takeoff", "goto", "rtl") or (self.task == "hover" and self.alt > 0):
            self.battery = max(0.0, self.battery - 0.02 * dt)
        if self.task == "takeoff":
            self._climb_to(self.target_alt, dt)
            if self.alt >= self.target_alt - 0.05:
                self.task = "hover"
                if M.MAV_CMD_NAV_TAKEOFF in self._open:
                    self._open.discard(M.MAV_CMD_NAV_TAKEOFF)
                    self._ack(M.MAV_CMD_NAV_TAKEOFF, protocol.RESULT_ACCEPTED)
            elif M.MAV_CMD_NAV_TAKEOFF in self._open and time.monotonic() - self._takeoff_progress_at >= PROGRESS_EVERY:
                self._takeoff_progress_at = time.monotonic()
                span = max(0.1, self.target_alt - self.takeoff_started_alt)
                pct = int(max(0.0, min(99.0, 100 * (self.alt - self.takeoff_started_alt) / span)))
                self._ack(M.MAV_CMD_NAV_TAKEOFF, protocol.RESULT_IN_PROGRESS, pct)
        elif self.task in ("goto", "rtl") and self.target_pos is not None:
            self._climb_to(self.target_alt, dt)
            self._fly_to(self.target_pos, dt)
        elif self.task in ("land", "rtl"):
            self.ground_speed = 0.0
            self.climb = -min(1.5, self.alt / dt) if dt > 0 else 0.0
            self.alt = max(0.0, self.alt - 1.5 * dt)
            if self.alt <= 0.0:
                self.task, self.armed = "ground", False
                self.statustext(M.MAV_SEVERITY_INFO, "Landed; disarmed")
        elif self.task == "orbit":
            self.heading = (self.heading + 12 * dt) % 360
            self.ground_speed = 5.0
            self._advance(dt)
        else:
            self.ground_speed = 0.0

    def _climb_to(self, target: float, dt: float) -> None:
        delta = target - self.alt
        step = math.copysign(min(abs(delta), self.climb_rate * dt), delta)
        self.alt += step
        self.climb = step / dt if dt > 0 else 0.0

    def _fly_to(self, target: tuple[float, float], dt: float) -> None:
        north = math.radians(target[0] - self.lat) * EARTH_R
        east = math.radians(target[1] - self.lon) * EARTH_R * math.cos(math.radians(self.lat))
        dist = math.hypot(north, east)
        if dist < 1.0:
            self.lat, self.lon = target
            self.ground_speed = 0.0
            if self.task == "rtl":
                self.target_pos = None  # over home: descend
                self.statustext(M.MAV_SEVERITY_INFO, "RTL: landing")
            else:
                self.task = "hover"
            return
        self.heading = (math.degrees(math.atan2(east, north)) + 360) % 360
        self.ground_speed = min(self.speed, dist / dt if dt > 0 else self.speed)
        self._advance(dt)

    def _advance(self, dt: float) -> None:
        d = self.ground_speed * dt
        north, east = math.cos(math.radians(self.heading)) * d, math.sin(math.radians(self.heading)) * d
        self.lat += math.degrees(north / EARTH_R)
        self.lon += math.degrees(east / (EARTH_R * math.cos(math.radians(self.lat))))

    # ------------------------------------------------------------ commands
    def _datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            msgs = self.parser.parse_buffer(data) or []
        except Exception:  # noqa: BLE001 - garbage from the bridge side is not our problem here
            self.parser = protocol.new_parser()
            return
        for msg in msgs:
            kind = msg.get_type()
            if kind == "COMMAND_LONG" and msg.target_system == self.sysid:
                params = (msg.param1, msg.param2, msg.param3, msg.param4, msg.param5, msg.param6, msg.param7)
                self._command(Received(kind, msg.command, params, 0, msg.confirmation, msg.target_system,
                                       msg.target_component, msg.get_srcSystem()))  # fmt: skip
            elif kind == "COMMAND_INT" and msg.target_system == self.sysid:
                params = (msg.param1, msg.param2, msg.param3, msg.param4, float(msg.x), float(msg.y), msg.z)
                self._command(Received(kind, msg.command, params, msg.frame, 0, msg.target_system,
                                       msg.target_component, msg.get_srcSystem()))  # fmt: skip

    def _ack(self, command: int, result: int, progress: int = 0, to: int = 0) -> None:
        self.acks.append((command, result, progress))
        self._send(M.MAVLink_command_ack_message(command, result, progress, 0, to or self._gcs, 0))

    def _command(self, rec: Received) -> None:
        self.received.append(rec)
        self._gcs = rec.source_system
        cmd = rec.command
        if cmd in self.silent:
            return
        if self.drop_first.get(cmd, 0) > 0:
            self.drop_first[cmd] -= 1
            return
        if cmd in self.results:
            self._ack(cmd, self.results[cmd])
            return
        result = self._apply(rec)
        self._flush_texts()  # what the autopilot says about a command goes out with its answer
        if result is not None:
            self._ack(cmd, result)

    def _apply(self, rec: Received) -> int | None:
        """Carry a command out; the MAV_RESULT to answer (None: answered later, IN_PROGRESS)."""
        p, cmd = rec.params, rec.command
        px4 = self.autopilot == protocol.AUTOPILOT_PX4
        if cmd == M.MAV_CMD_COMPONENT_ARM_DISARM:
            if p[0] == 1:
                if not self.prearm_ok:
                    self.statustext(M.MAV_SEVERITY_CRITICAL, "PreArm: GPS: need 3D fix")
                    return int(M.MAV_RESULT_DENIED)
                self.armed = True
                self.statustext(M.MAV_SEVERITY_INFO, "Arming motors")
                return int(M.MAV_RESULT_ACCEPTED)
            if self.alt > 0.5 and int(p[1]) != protocol.FORCE_DISARM_MAGIC:
                self.statustext(M.MAV_SEVERITY_CRITICAL, "Disarm: vehicle is flying")
                return int(M.MAV_RESULT_DENIED)
            self.armed, self.task, self.alt = False, "ground", 0.0 if int(p[1]) == 0 else self.alt
            return int(M.MAV_RESULT_ACCEPTED)
        if cmd == M.MAV_CMD_DO_SET_MODE:
            custom = protocol.px4_custom_mode(int(p[1]), int(p[2])) if px4 else int(p[1])
            name = protocol.mode_name(self.autopilot, self.mav_type, protocol.MODE_FLAG_CUSTOM, custom)
            if name.startswith("MODE("):
                return int(M.MAV_RESULT_UNSUPPORTED)
            self._set_mode(name)
            return int(M.MAV_RESULT_ACCEPTED)
        if cmd == M.MAV_CMD_NAV_TAKEOFF:
            if not self.armed:
                self.statustext(M.MAV_SEVERITY_WARNING, "Takeoff: arm first")
                return int(M.MAV_RESULT_FAILED)
            if not px4 and self.mode != "GUIDED":
                self.statustext(M.MAV_SEVERITY_WARNING, "Takeoff: switch to GUIDED first")
                return int(M.MAV_RESULT_FAILED)
            target = p[6] - self.home[2] if px4 else p[6]
            self.target_alt, self.takeoff_started_alt = max(1.0, target), self.alt
            self.task = "takeoff"
            if px4:
                self.mode = "TAKEOFF"
            if cmd in self.in_progress:
                self._open.add(cmd)
                self._takeoff_progress_at = time.monotonic()
                return int(M.MAV_RESULT_IN_PROGRESS)
            return int(M.MAV_RESULT_ACCEPTED)
        if cmd == M.MAV_CMD_DO_REPOSITION:
            if not self.armed or self.alt < 0.5:
                return int(M.MAV_RESULT_FAILED)
            lat, lon = (p[4] / 1e7, p[5] / 1e7) if rec.kind == "COMMAND_INT" else (p[4], p[5])
            z = p[6]
            if not math.isnan(z):
                self.target_alt = z - self.home[2] if rec.frame == M.MAV_FRAME_GLOBAL else z
            else:
                self.target_alt = self.alt
            if int(p[1]) & protocol.REPOSITION_CHANGE_MODE:
                self.mode = "GUIDED" if not px4 else "LOITER"
            self.target_pos, self.task = (lat, lon), "goto"
            return int(M.MAV_RESULT_ACCEPTED)
        if cmd == M.MAV_CMD_NAV_RETURN_TO_LAUNCH:
            if not self.armed:
                return int(M.MAV_RESULT_FAILED)
            self._set_mode("RTL")
            return int(M.MAV_RESULT_ACCEPTED)
        if cmd == M.MAV_CMD_NAV_LAND:
            if not self.armed:
                return int(M.MAV_RESULT_FAILED)
            self._set_mode("LAND")
            return int(M.MAV_RESULT_ACCEPTED)
        if cmd == M.MAV_CMD_DO_CHANGE_SPEED:
            if p[1] > 0:
                self.speed = p[1]
            return int(M.MAV_RESULT_ACCEPTED)
        return int(M.MAV_RESULT_UNSUPPORTED)

    def _set_mode(self, name: str) -> None:
        self.mode = name
        if name == "RTL":
            self.task, self.target_pos = "rtl", (self.home[0], self.home[1])
            self.target_alt = max(self.alt, 15.0)
        elif name == "LAND":
            self.task = "land"
        elif name in ("LOITER", "BRAKE", "POSHOLD", "HOLD", "GUIDED") and self.task != "ground":
            self.task = "hover"
        elif name in ("AUTO", "MISSION") and self.alt > 0.5:
            self.task = "orbit"


async def _main(args: argparse.Namespace) -> None:
    host, _, port = args.to.rpartition(":")
    autopilot = protocol.AUTOPILOT_PX4 if args.autopilot == "px4" else protocol.AUTOPILOT_ARDUPILOT
    emulators = [
        Emulator((host or "127.0.0.1", int(port)), sysid=args.sysid + i, autopilot=autopilot) for i in range(args.count)
    ]
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    for emulator in emulators:
        await emulator.start()
    log.info("emulating %d vehicle(s) from system id %d → udp:%s", args.count, args.sysid, args.to)
    await stopping.wait()
    for emulator in emulators:
        await emulator.stop()


def main() -> None:
    """``python -m services.mavlink.emulator``."""
    parser = argparse.ArgumentParser(description="Emulate MAVLink vehicles talking to a bridge over UDP.")
    parser.add_argument("--to", default="127.0.0.1:14550", help="the bridge's UDP address (default 127.0.0.1:14550)")
    parser.add_argument("--sysid", type=int, default=1, help="first system id (default 1)")
    parser.add_argument("--count", type=int, default=1, help="number of vehicles (default 1)")
    parser.add_argument("--autopilot", choices=["ardupilot", "px4"], default="ardupilot")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":  # pragma: no cover
    main()
