"""The fleet simulator: believable telemetry for N entities, command handling, fault injection.

Used by ``overwatch simulate``, ``serve --demo``, the tests and the benchmarks. Each
entity moves around a home point according to its type (multirotors orbit, fixed
wings fly wide circles, ground vehicles patrol a square, cameras stay put and pan),
drains its battery, reports its mode, and obeys ``goto``, ``rtl``, ``land``,
``takeoff``, ``hold``, ``resume``, ``set_mode``, ``set_speed``, ``arm``/``disarm``,
acknowledging each with ``accepted`` then ``completed`` or ``failed``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from core import topology
from core.contracts.commands import CommandAck, CommandMessage, check_params
from core.contracts.common import DecodeError, decode, encode, utc_now

log = logging.getLogger("overwatch.simulator")

EARTH_R = 6_371_000.0  # metres
KINDS = ("aircraft_multirotor", "aircraft_fixed_wing", "ground_vehicle_wheeled", "isr_sensor")


def offset(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    """Move a WGS84 point by metres north/east (flat-earth, fine for a few km)."""
    dlat = north_m / EARTH_R
    dlon = east_m / (EARTH_R * math.cos(math.radians(lat)))
    return lat + math.degrees(dlat), lon + math.degrees(dlon)


def distance_bearing(lat1: float, lon1: float, lat2: float, lon2: float) -> tuple[float, float]:
    """Metres and bearing (degrees) from point 1 to point 2 (equirectangular approximation)."""
    north = math.radians(lat2 - lat1) * EARTH_R
    east = math.radians(lon2 - lon1) * EARTH_R * math.cos(math.radians((lat1 + lat2) / 2))
    return math.hypot(north, east), (math.degrees(math.atan2(east, north)) + 360) % 360


@dataclass
class FaultConfig:
    """Fault injection: bad payloads and silences."""

    bad_payload_rate: float = 0.0  # probability per publish of sending garbage instead
    dropout_rate: float = 0.0  # probability per entity per second of going silent
    dropout_seconds: float = 15.0


@dataclass
class SimEntity:
    """One simulated entity and its motion state."""

    entity_id: str
    org_id: str
    kind: str
    home: tuple[float, float]
    rng: random.Random
    lat: float = 0.0
    lon: float = 0.0
    alt: float = 0.0
    heading: float = 0.0
    speed: float = 0.0
    cruise: float = 10.0
    battery: float = 100.0
    armed: bool = True
    mode: str = "AUTO"
    phase: float = 0.0
    radius: float = 300.0
    cruise_alt: float = 60.0
    target: tuple[float, float] | None = None
    target_alt: float | None = None
    task: str = "patrol"  # patrol | goto | rtl | land | landed | hold | takeoff
    pending: dict[str, str] = field(default_factory=dict)  # task → command_id to complete
    silent_until: float = 0.0

    def __post_init__(self) -> None:
        r = self.rng
        self.phase = r.uniform(0, 2 * math.pi)
        if self.kind == "aircraft_fixed_wing":
            self.radius, self.cruise, self.cruise_alt = r.uniform(600, 900), r.uniform(18, 24), r.uniform(110, 150)
        elif self.kind == "ground_vehicle_wheeled":
            self.radius, self.cruise, self.cruise_alt = r.uniform(150, 300), r.uniform(4, 7), 0.0
        elif self.kind == "isr_sensor":
            self.radius, self.cruise, self.cruise_alt, self.mode = 0.0, 0.0, 8.0, "SURVEILLANCE"
        else:
            self.radius, self.cruise, self.cruise_alt = r.uniform(180, 420), r.uniform(8, 12), r.uniform(40, 80)
        self.battery = r.uniform(55, 100)
        self.lat, self.lon = offset(*self.home, math.cos(self.phase) * self.radius, math.sin(self.phase) * self.radius)
        self.alt = self.cruise_alt

    # ------------------------------------------------------------ motion
    def step(self, dt: float) -> None:
        """Advance the simulation by ``dt`` seconds."""
        if self.kind == "isr_sensor":
            self.heading = (self.heading + 6 * dt) % 360
            self.speed = 0.0
            return
        if self.task in ("landed",) or not self.armed:
            self.speed = 0.0
            self.battery = min(100.0, self.battery + 0.5 * dt)  # charging on the pad
            return
        if self.task == "hold":
            self.speed = 0.0
        elif self.task in ("goto", "rtl") and self.target is not None:
            self._fly_to(self.target, dt)
        elif self.task == "land":
            self.speed = 0.0
            self.alt = max(0.0, self.alt - 3.0 * dt)
            if self.alt <= 0.0:
                self.task, self.mode, self.armed = "landed", "LAND", False
                self._complete("land", "landed")
                self._complete("rtl", "landed at home")
        elif self.task == "takeoff":
            target = self.target_alt or self.cruise_alt
            self.alt = min(target, self.alt + 2.5 * dt)
            if self.alt >= target:
                self.task, self.mode = "patrol", "AUTO"
                self._complete("takeoff", f"reached {target:.0f} m")
        else:
            self._patrol(dt)
        drain = {"aircraft_fixed_wing": 0.04, "ground_vehicle_wheeled": 0.02}.get(self.kind, 0.07)
        self.battery = max(0.0, self.battery - drain * dt * (0.5 + self.speed / max(self.cruise, 1)))
        if self.battery < 8 and self.task == "patrol":
            self.start_rtl()

    def _patrol(self, dt: float) -> None:
        if self.kind == "ground_vehicle_wheeled":
            # Perimeter of a square around home.
            side = self.radius * 2
            self.phase = (self.phase + self.cruise * dt / (4 * side)) % 1.0
            t = self.phase * 4
            edge, frac = int(t), t - int(t)
            corners = [(-1, -1), (-1, 1), (1, 1), (1, -1), (-1, -1)]
            (n0, e0), (n1, e1) = corners[edge], corners[edge + 1]
            north = (n0 + (n1 - n0) * frac) * self.radius
            east = (e0 + (e1 - e0) * frac) * self.radius
            new = offset(*self.home, north, east)
        else:
            self.phase = (self.phase + self.cruise * dt / self.radius) % (2 * math.pi)
            new = offset(*self.home, math.cos(self.phase) * self.radius, math.sin(self.phase) * self.radius)
        dist, bearing = distance_bearing(self.lat, self.lon, *new)
        if dist > 0.01:
            self.heading = bearing
        self.speed = dist / dt if dt > 0 else 0.0
        self.lat, self.lon = new
        self.alt += (self.cruise_alt - self.alt) * min(1.0, dt * 0.3)

    def _fly_to(self, target: tuple[float, float], dt: float) -> None:
        dist, bearing = distance_bearing(self.lat, self.lon, *target)
        step = self.cruise * dt
        self.heading = bearing
        if self.target_alt is not None:
            self.alt += (self.target_alt - self.alt) * min(1.0, dt * 0.5)
        if dist <= max(step, 2.0):
            self.lat, self.lon = target
            self.speed = 0.0
            if self.task == "rtl":
                self.task, self.mode = "land", "LAND"
            else:
                self.task, self.mode = "hold", "LOITER" if self.kind != "ground_vehicle_wheeled" else "HOLD"
                self._complete("goto", f"arrived after {dist:.0f} m")
            return
        north = math.cos(math.radians(bearing)) * step
        east = math.sin(math.radians(bearing)) * step
        self.lat, self.lon = offset(self.lat, self.lon, north, east)
        self.speed = self.cruise

    def start_rtl(self) -> None:
        """Head home, then land."""
        self.task, self.mode, self.target, self.target_alt = "rtl", "RTL", self.home, self.cruise_alt

    def _complete(self, task: str, detail: str) -> None:
        command_id = self.pending.pop(task, None)
        if command_id:
            self.pending[f"done:{command_id}"] = detail

    # ------------------------------------------------------------ commands
    def command(self, cmd: CommandMessage) -> tuple[str, str]:
        """Apply a command; return the immediate ack ``(status, detail)``."""
        p = cmd.params
        if self.kind == "isr_sensor" and cmd.command not in ("set_mode", "hold", "resume"):
            return "rejected", f"{cmd.command} not supported by a fixed camera"
        if cmd.command == "goto":
            self.target = (float(p["latitude"]), float(p["longitude"]))
            self.target_alt = float(p["altitude"]) if p.get("altitude") is not None else None
            self.task, self.mode, self.armed = "goto", "GUIDED", True
            if self.alt <= 0.5 and self.kind != "ground_vehicle_wheeled":
                self.alt = 1.0
            self.pending["goto"] = cmd.command_id
            return "accepted", "navigating"
        if cmd.command == "rtl":
            self.start_rtl()
            self.pending["rtl"] = cmd.command_id
            return "accepted", "returning home"
        if cmd.command == "land":
            if self.task == "landed":
                return "completed", "already landed"
            self.task, self.mode = "land", "LAND"
            self.pending["land"] = cmd.command_id
            return "accepted", "landing"
        if cmd.command == "takeoff":
            self.task, self.mode, self.armed = "takeoff", "GUIDED", True
            self.target_alt = float(p.get("altitude", self.cruise_alt))
            self.pending["takeoff"] = cmd.command_id
            return "accepted", "taking off"
        if cmd.command == "hold":
            self.task, self.mode = "hold", "LOITER"
            return "completed", "holding position"
        if cmd.command == "resume":
            self.task, self.mode, self.armed = "patrol", "AUTO", True
            return "completed", "patrol resumed"
        if cmd.command == "set_mode":
            self.mode = str(p["mode"])
            self.task = "hold" if self.mode in ("LOITER", "HOLD", "POSHOLD", "BRAKE") else self.task
            return "completed", f"mode {self.mode}"
        if cmd.command == "set_speed":
            self.cruise = float(p["speed"])
            return "completed", f"cruise {self.cruise:.1f} m/s"
        if cmd.command in ("arm", "disarm"):
            self.armed = cmd.command == "arm"
            return "completed", cmd.command + "ed"
        return "rejected", f"unsupported command {cmd.command!r}"

    # ------------------------------------------------------------ telemetry
    def telemetry(self) -> dict[str, Any]:
        """The ontology telemetry payload for the current state."""
        ts = utc_now()
        roll = 0.0 if self.speed < 0.5 else min(0.5, self.speed / 60) * (1 if self.kind != "isr_sensor" else 0)
        return {
            "timestamp": ts,
            "position": {
                "global": {
                    "latitude": round(self.lat, 7),
                    "longitude": round(self.lon, 7),
                    "altitude_msl": round(self.alt + 30.0, 2),
                    "altitude_relative": round(self.alt, 2),
                    "satellites_visible": 14,
                    "fix_type": 3,
                    "timestamp": ts,
                }
            },
            "attitude": {
                "euler": {
                    "roll": round(roll, 3),
                    "pitch": -0.05 if self.speed > 1 else 0.0,
                    "yaw": round(math.radians(self.heading), 4),
                    "timestamp": ts,
                }
            },
            "vehicle_status": {"armed": self.armed, "mode": self.mode, "timestamp": ts},
            "power": {
                "voltage": round(14.0 + 2.8 * self.battery / 100, 2),
                "current": round(2 + self.speed * 0.8, 2) if self.armed else 0.2,
                "battery_remaining": round(self.battery, 1),
                "timestamp": ts,
            },
            "vfr": {
                "groundspeed": round(self.speed, 2),
                "airspeed": round(self.speed, 2),
                "heading": round(self.heading, 1),
                "altitude": round(self.alt, 2),
                "climb_rate": 0.0,
                "throttle": 0 if not self.armed else round(40 + self.speed * 2, 0),
                "timestamp": ts,
            },
        }


def make_fleet(org_id: str, ids: list[tuple[str, str]], home: tuple[float, float], seed: int = 7) -> list[SimEntity]:
    """Build simulated entities from ``(entity_id, entity_type)`` pairs."""
    rng = random.Random(seed)
    fleet = []
    for entity_id, kind in ids:
        spread = offset(*home, rng.uniform(-400, 400), rng.uniform(-400, 400)) if kind != "isr_sensor" else home
        fleet.append(
            SimEntity(
                entity_id, org_id, kind if kind in KINDS else "aircraft_multirotor", spread, random.Random(rng.random())
            )
        )
    return fleet


class Simulator:
    """Publishes telemetry for a fleet and answers its commands."""

    def __init__(
        self, nc: NATS, fleet: list[SimEntity], rate_hz: float = 2.0, faults: FaultConfig | None = None, seed: int = 11
    ) -> None:
        self.nc = nc
        self.fleet = {e.entity_id: e for e in fleet}
        self.rate_hz = rate_hz
        self.faults = faults or FaultConfig()
        self.rng = random.Random(seed)
        self.published = 0
        self.bad_published = 0
        self.commands_handled = 0
        self.paused: set[str] = set()

    def pause(self, entity_id: str) -> None:
        """Stop publishing for one entity (it goes offline) until ``resume``."""
        self.paused.add(entity_id)

    def resume(self, entity_id: str) -> None:
        """Publish again for a paused entity."""
        self.paused.discard(entity_id)

    async def run(self, stopping: asyncio.Event, duration: float | None = None) -> None:
        """Publish until ``stopping`` is set (or ``duration`` seconds passed)."""
        subs = []
        for org_id in {e.org_id for e in self.fleet.values()}:
            subs.append(await self.nc.subscribe(topology.command_wildcard(org_id), cb=self._on_command))
        for entity in self.fleet.values():
            await self._event(entity, "bootsequence")
        started = last = time.monotonic()
        interval = 1.0 / self.rate_hz
        try:
            while not stopping.is_set():
                now = time.monotonic()
                if duration is not None and now - started >= duration:
                    break
                dt, last = now - last, now
                await self.tick(dt, now)
                try:
                    await asyncio.wait_for(stopping.wait(), max(0.0, interval - (time.monotonic() - now)))
                except TimeoutError:
                    pass
        finally:
            for sub in subs:
                try:
                    await sub.unsubscribe()
                except Exception:
                    log.debug("unsubscribe failed", exc_info=True)

    async def tick(self, dt: float, now: float) -> None:
        """Advance every entity and publish its telemetry (and any completion acks)."""
        for entity in self.fleet.values():
            entity.step(dt)
            await self._flush_completions(entity)
            if entity.entity_id in self.paused or now < entity.silent_until:
                continue
            if self.faults.dropout_rate and self.rng.random() < self.faults.dropout_rate * dt:
                entity.silent_until = now + self.faults.dropout_seconds
                log.info("simulating a %.0fs dropout of %s", self.faults.dropout_seconds, entity.entity_id)
                continue
            subject = topology.telemetry_subject(entity.org_id, entity.entity_id)
            if self.faults.bad_payload_rate and self.rng.random() < self.faults.bad_payload_rate:
                await self.nc.publish(subject, self.rng.choice(BAD_PAYLOADS))
                self.bad_published += 1
                continue
            await self.nc.publish(subject, encode(entity.telemetry()))
            self.published += 1

    async def _on_command(self, msg: Msg) -> None:
        entity_id = msg.subject.rsplit(".", 1)[-1]
        try:
            cmd = decode(msg.data, CommandMessage)
        except DecodeError:
            return
        targets = (
            list(self.fleet.values())
            if entity_id == "broadcast"
            else [self.fleet[entity_id]]
            if entity_id in self.fleet
            else []
        )
        for entity in targets:
            try:
                check_params(cmd.command, cmd.params)
                status, detail = entity.command(cmd)
            except (DecodeError, KeyError, TypeError, ValueError) as exc:
                status, detail = "rejected", f"bad parameters: {exc}"
            self.commands_handled += 1
            await self._ack(entity, cmd.command_id, status, detail)

    async def _flush_completions(self, entity: SimEntity) -> None:
        for key in [k for k in entity.pending if k.startswith("done:")]:
            detail = entity.pending.pop(key)
            await self._ack(entity, key.removeprefix("done:"), "completed", detail)

    async def _ack(self, entity: SimEntity, command_id: str, status: str, detail: str) -> None:
        ack = CommandAck(command_id=command_id, status=status, detail=detail, timestamp=utc_now())  # type: ignore[arg-type]
        await self.nc.publish(topology.command_ack_subject(entity.org_id, entity.entity_id), encode(ack))

    async def _event(self, entity: SimEntity, kind: str) -> None:
        body = {
            "event_type": kind,
            "timestamp": utc_now(),
            "entity_id": entity.entity_id,
            "org_id": entity.org_id,
            "message": f"simulator {kind}",
        }
        await self.nc.publish(topology.event_subject(kind, entity.org_id, entity.entity_id), encode(body))


BAD_PAYLOADS: tuple[bytes, ...] = (
    b"{not json",
    b"[1, 2, 3]",
    b'{"position": "north-ish"}',
    b'{"power": {"battery_remaining": "full"}}',
    b'{"detections": {"objects": {}}}',
    b"",
)
