"""The bridge: MAVLink links ↔ NATS, one entity per vehicle.

* Bytes from every link are parsed per link and sender (MAVLink 2; 1 is read too).
  A vehicle is a system id whose autopilot sent a HEARTBEAT; it is registered through
  the device self-registration path (``constellation.entities.{org}.created``) unless
  the mapping file binds it to an existing entity, and telemetry flows once its
  EntityState exists.
* Each vehicle's messages are merged into EntityState scopes and published on
  ``constellation.telemetry.{org}.{entity}`` once per ``MAVLINK_PUBLISH_INTERVAL``.
* No HEARTBEAT for ``MAVLINK_COMM_LOST_AFTER`` seconds: ``vehicle_status.link.comm_lost``
  and a ``comm_lost`` device alert; the next HEARTBEAT clears both.
* Commands on ``constellation.commands.{org}.*`` for our vehicles become MAVLink
  commands (``services/mavlink/commands.py``); acks go to ``….{entity}.ack``.
* Malformed frames, unknown message ids, messages from other components and clashing
  system ids are counted (``BridgeStats``) and logged (rate-limited), never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.kv import KeyValue

from core import topology
from core.contracts.commands import CommandAck, CommandMessage, check_params
from core.contracts.common import DecodeError, decode, encode, new_id, utc_now
from core.contracts.events import EntityLifecycleEvent, LifecycleData
from services.mavlink import protocol
from services.mavlink.commands import CommandProtocol, Untranslatable, translate
from services.mavlink.config import LinkSpec, MavlinkSettings
from services.mavlink.links import Link, Peer, UdpLink, make_link
from services.mavlink.mapping import Binding, load_mapping
from services.mavlink.vehicle import HANDLERS, Vehicle, on_heartbeat

log = logging.getLogger("overwatch.mavlink")

GCS_HEARTBEAT_INTERVAL = 1.0  # seconds (MAVLink's nominal rate)
WATCH_INTERVAL = 0.1  # seconds between comm-lost checks
STATS_LOG_INTERVAL = 60.0  # seconds between counter summaries in the log
REGISTER_REPUBLISH = 10.0  # seconds before an unanswered ``created`` is announced again (doubling each time)
REGISTER_REPUBLISH_MAX = 300.0
REGISTER_WARN_AFTER = 5.0  # seconds: a vehicle still unregistered then is worth a warning
LOG_EVERY = 30.0  # seconds: each kind of oddity is logged at most this often (it is always counted)
TEXT_WAIT = 0.3  # seconds a failed command waits for the STATUSTEXT that explains it
DECODED = {*HANDLERS, "COMMAND_ACK"}  # what the bridge reads; other valid messages are only counted
EXPLAINED = {1, 2, 4}  # TEMPORARILY_REJECTED, DENIED, FAILED: autopilots say why in a STATUSTEXT


class BridgeError(Exception):
    """The bridge cannot start (a port in use, a device missing); the message says which."""


class BridgeStats(msgspec.Struct, kw_only=True):
    """What the bridge has seen (``overwatch mavlink`` logs it; tests and the benchmark read it)."""

    datagrams: int = 0
    messages: int = 0
    malformed: int = 0
    unknown: Counter[str] = msgspec.field(default_factory=Counter)  # message ids not in the dialect
    unmapped: Counter[str] = msgspec.field(default_factory=Counter)  # valid messages we do not map
    not_vehicle: int = 0  # before a vehicle's first HEARTBEAT, other GCSs, cameras …
    other_component: int = 0
    clashes: int = 0
    published: int = 0
    publish_errors: int = 0
    commands: int = 0
    acks_sent: int = 0


class Bridge:
    """One bridge process (or in-process component): its links, vehicles and NATS side."""

    def __init__(
        self,
        settings: MavlinkSettings,
        nc: NATS,
        *,
        mapping: dict[int, Binding] | None = None,
        links: list[LinkSpec] | None = None,
    ) -> None:
        self.settings = settings
        self.nc = nc
        self.org_id = settings.org_id
        self.js = nc.jetstream(timeout=2.0)
        # Bound directly (device credentials have no STREAM.INFO); only used to see our own keys.
        self.kv = KeyValue(
            name=topology.BUCKET_STATE,
            stream=topology.kv_stream(topology.BUCKET_STATE),
            pre=f"$KV.{topology.BUCKET_STATE}.",
            js=nc.jetstream(timeout=0.5),
            direct=True,
        )
        self.mapping = mapping if mapping is not None else (load_mapping(settings.mapping) if settings.mapping else {})
        self.link_specs = links if links is not None else settings.links
        self.links: list[Link] = []
        self.vehicles: dict[int, Vehicle] = {}
        self.by_entity: dict[str, Vehicle] = {}
        self.stats = BridgeStats()
        self.sender = protocol.new_sender(settings.sysid, settings.compid)
        self.commands = CommandProtocol(
            self._send_to, settings.command_timeout, settings.command_retries, settings.progress_timeout
        )
        self._parsers: dict[tuple[int, Peer], Any] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._subs: list[Any] = []
        self._last_logged: dict[str, float] = {}
        self._stopping = asyncio.Event()
        self.started = asyncio.Event()
        self._warm_up: asyncio.Future[None] | None = None

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Open every link, subscribe to commands, start the loops; ``BridgeError`` if a link cannot open."""
        # pymavlink's mode tables take ~0.3 s to import: in a thread, now, rather than on the event loop at the first
        # HEARTBEAT (not awaited: the server's start-up need not wait for it).
        self._warm_up = asyncio.get_running_loop().run_in_executor(None, protocol.warm_up)
        for spec in self.link_specs:
            link = make_link(spec, self.on_bytes)
            try:
                await link.start()
            except OSError as exc:
                for opened in self.links:
                    opened.close()
                raise BridgeError(f"cannot open MAVLink link {spec.label}: {exc.strerror or exc}") from None
            self.links.append(link)
            log.info("MAVLink link %s open", _where(link))
        self._subs.append(await self.nc.subscribe(topology.command_wildcard(self.org_id), cb=self._on_command))
        for name, loop in (("flush", self._flush_loop), ("watch", self._watch_loop), ("stats", self._stats_loop)):
            self._tasks.append(asyncio.create_task(loop(), name=f"mavlink-{name}"))
        self.started.set()
        log.info(
            "MAVLink bridge for organisation %s as system %d/%d on %d link(s)",
            self.org_id,
            self.settings.sysid,
            self.settings.compid,
            len(self.links),
        )

    async def stop(self) -> None:
        """Stop the loops, publish what is pending, close the links."""
        self._stopping.set()
        if self._warm_up is not None:
            with contextlib.suppress(Exception):
                await self._warm_up
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._flush()
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        for link in self.links:
            link.close()
        self._log_stats()

    async def run(self, stopping: asyncio.Event) -> None:
        """Start, run until ``stopping`` is set, stop."""
        await self.start()
        try:
            await stopping.wait()
        finally:
            await self.stop()

    def udp_address(self, index: int = 0) -> tuple[str, int]:
        """The bound address of the ``index``-th UDP link (the real port when 0 was asked for)."""
        udp = [link for link in self.links if isinstance(link, UdpLink)]
        return udp[index].local_address

    # ------------------------------------------------------------ receiving
    def on_bytes(self, link: Link, data: bytes, peer: Peer) -> None:
        """Bytes from a link: parse and dispatch every complete message."""
        self.stats.datagrams += 1
        if peer is not None:
            self._on_datagram(link, data, peer)
            return
        key = (id(link), peer)
        parser = self._parsers.get(key)
        if parser is None:
            if len(self._parsers) > 4096:
                self._parsers.clear()  # a flood of spoofed peers: start over rather than grow
            parser = self._parsers[key] = protocol.new_parser()
        try:
            msgs = parser.parse_buffer(data)
        except Exception as exc:  # noqa: BLE001 - robust parsing should not raise; never let a frame kill the link
            self.stats.malformed += 1
            self._parsers.pop(key, None)
            self._oddity("parser", f"{link.name}: parser error {exc!r}; parser reset")
            return
        if msgs:
            for msg in msgs:
                self.on_message(link, peer, msg)

    def _on_datagram(self, link: Link, data: bytes, peer: Peer) -> None:
        """A UDP datagram: whole frames only. Only messages the bridge uses are decoded; the rest are counted
        after their CRC is checked (decoding a RAW_IMU nobody reads would cost as much as parsing it)."""
        frames, junk = protocol.split_datagram(data)
        if junk:
            self.stats.malformed += 1
            self._oddity("malformed", f"{link.name}: malformed frame from {peer} dropped ({junk} stray bytes)")
        if not frames:
            return
        parser = self._parsers.get((id(link), peer))
        if parser is None:
            if len(self._parsers) > 4096:
                self._parsers.clear()
            parser = self._parsers[(id(link), peer)] = protocol.new_parser()
        for msgid, _sysid, _compid, frame in frames:
            cls = protocol.message_class(msgid)
            if cls is None:
                self.stats.unknown[f"UNKNOWN_{msgid}"] += 1
                self._oddity(f"unknown:{msgid}", f"{link.name}: message id {msgid} is not in the dialect; counted")
                continue
            name = cls.msgname
            if name not in DECODED:
                if protocol.crc_ok(frame, cls.crc_extra):
                    self.stats.messages += 1
                    self.stats.unmapped[name] += 1
                else:
                    self.stats.malformed += 1
                    self._oddity("malformed", f"{link.name}: malformed frame from {peer} dropped (bad CRC, {name})")
                continue
            try:
                msg = parser.decode(bytearray(frame))
            except Exception as exc:  # noqa: BLE001 - MAVError (CRC, length) or a payload pymavlink cannot unpack
                self.stats.malformed += 1
                self._oddity("malformed", f"{link.name}: malformed frame from {peer} dropped ({exc})")
                continue
            self.on_message(link, peer, msg)

    def on_message(self, link: Link, peer: Peer, msg: Any) -> None:
        """One parsed message."""
        kind: str = msg._type
        if kind == "BAD_DATA":
            self.stats.malformed += 1
            self._oddity("malformed", f"{link.name}: malformed frame from {peer} dropped ({msg.reason})")
            return
        if kind.startswith("UNKNOWN_"):
            self.stats.unknown[kind] += 1
            self._oddity(f"unknown:{kind}", f"{link.name}: message id {kind[8:]} is not in the dialect; counted")
            return
        self.stats.messages += 1
        header = msg._header
        sysid = header.srcSystem
        vehicle = self.vehicles.get(sysid)
        if vehicle is None:
            if kind != "HEARTBEAT" or msg.autopilot == protocol.AUTOPILOT_INVALID or msg.type in protocol.NOT_VEHICLES:
                self.stats.not_vehicle += 1
                return
            self._new_vehicle(sysid, header.srcComponent, link, peer, msg)
            return
        if (vehicle.link is not link or vehicle.peer != peer) and not self._may_move(vehicle, link, peer, kind, msg):
            return
        if header.srcComponent != vehicle.compid and kind not in ("STATUSTEXT", "COMMAND_ACK"):
            self.stats.other_component += 1
            return
        vehicle.received += 1
        if kind == "COMMAND_ACK":
            self.commands.on_ack(vehicle, msg)
            return
        handler = HANDLERS.get(kind)
        if handler is None:
            self.stats.unmapped[kind] += 1
            return
        handler(vehicle, msg)
        if kind == "HEARTBEAT" and vehicle.comm_lost:
            self._comm_restored(vehicle)

    def _may_move(self, v: Vehicle, link: Link, peer: Peer, kind: str, msg: Any) -> bool:
        """A known system id heard on another link or from another address."""
        silent = time.monotonic() - v.last_heartbeat > self.settings.comm_lost_after
        if silent and kind == "HEARTBEAT" and msg.autopilot != protocol.AUTOPILOT_INVALID:
            log.warning("%s moved from %s to %s", v.label, _where(v.link, v.peer), _where(link, peer))
            v.link, v.peer = link, peer
            return True
        self.stats.clashes += 1
        self._oddity(
            f"clash:{v.sysid}",
            f"system id {v.sysid} also heard on {_where(link, peer)} while {_where(v.link, v.peer)} is live:"
            " a second vehicle with the same id? Its messages are dropped (give each vehicle its own SYSID_THISMAV)",
        )
        return False

    def _new_vehicle(self, sysid: int, compid: int, link: Link, peer: Peer, msg: Any) -> Vehicle:
        binding = self.mapping.get(sysid, Binding())
        entity_id = binding.entity_id or f"{self.settings.entity_prefix}{sysid}"
        vehicle = Vehicle(sysid, compid, entity_id, binding.name or f"MAVLink {sysid}", link, peer)
        vehicle.bound = binding.bound
        vehicle.entity_type = binding.entity_type or protocol.entity_type_for(msg.type)
        self.vehicles[sysid] = vehicle
        self.by_entity[entity_id] = vehicle
        on_heartbeat(vehicle, msg)
        log.info(
            "new vehicle: system %d component %d (%s %s) on %s → entity %s%s",
            sysid,
            compid,
            protocol.AUTOPILOT_NAMES.get(msg.autopilot, f"autopilot {msg.autopilot}"),
            vehicle.entity_type,
            _where(link, peer),
            entity_id,
            " (bound)" if vehicle.bound else "",
        )
        self._tasks.append(asyncio.create_task(self._register(vehicle), name=f"mavlink-register-{sysid}"))
        return vehicle

    # ------------------------------------------------------------ registration
    async def _register(self, v: Vehicle) -> None:
        """Announce the vehicle (unless bound) until its EntityState exists, then let telemetry flow."""
        v.registering = True
        started = announced = time.monotonic()
        republish, delay, warned = REGISTER_REPUBLISH, 0.05, False
        if not v.bound:
            await self._announce(v)
        while not self._stopping.is_set():
            now = time.monotonic()
            if not v.bound and now - announced >= republish:
                # Refused announcements are dead-lettered: back off so a full or unknown organisation is not flooded.
                announced, republish = now, min(republish * 2, REGISTER_REPUBLISH_MAX)
                await self._announce(v)
            if not warned and now - started > REGISTER_WARN_AFTER:
                warned = True
                log.warning(
                    "%s is not registered after %.0fs: %s",
                    v.label,
                    now - started,
                    f"entity {v.entity_id} does not exist (MAVLINK_MAPPING binds it)"
                    if v.bound
                    else f"does organisation {self.org_id} exist and have room (OVERWATCH_MAX_ENTITIES_PER_ORG)?"
                    " The dead-letter stream has the reason; its telemetry is held until then",
                )
            if await self._exists(v.entity_id):
                v.registered, v.registering = True, False
                v.link_dirty = True
                v.touch()
                log.info("%s registered; publishing its telemetry", v.label)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 2.0)

    async def _announce(self, v: Vehicle) -> None:
        event = EntityLifecycleEvent(
            id=new_id(),
            type="created",
            timestamp=utc_now(),
            source="mavlink-bridge",
            data=LifecycleData(
                entity_id=v.entity_id, org_id=self.org_id, entity_type=v.entity_type, name=v.name, status="active"
            ),
        )
        try:
            await self.js.publish(topology.entity_lifecycle_subject(self.org_id, "created"), encode(event))
        except Exception as exc:  # noqa: BLE001 - NATS down or no permission: retried on the next round
            self._oddity(f"announce:{v.sysid}", f"announcing {v.label} failed: {exc or type(exc).__name__}")

    async def _exists(self, entity_id: str) -> bool:
        try:
            await self.kv.get(entity_id)
            return True
        except Exception:  # noqa: BLE001 - not there yet, or our credentials do not cover it yet
            return False

    # ------------------------------------------------------------ publishing
    async def _flush_loop(self) -> None:
        interval = self.settings.publish_interval
        while True:
            await asyncio.sleep(interval)
            try:
                await self._flush()
            except Exception:
                log.exception("publishing telemetry failed")

    async def _flush(self) -> None:
        ts = ""
        for v in list(self.vehicles.values()):
            if not v.dirty or not v.registered:
                continue
            ts = ts or utc_now()
            body = v.take_patch(ts, self._link_info(v))
            try:
                await self.nc.publish(topology.telemetry_subject(self.org_id, v.entity_id), encode(body))
                self.stats.published += 1
                v.published += 1
            except Exception as exc:  # noqa: BLE001 - disconnected: this patch is lost, the next one is fresh
                self.stats.publish_errors += 1
                self._oddity("publish", f"publishing telemetry of {v.label} failed: {exc or type(exc).__name__}")

    def _link_info(self, v: Vehicle) -> dict[str, Any]:
        return {
            "comm_lost": v.comm_lost,
            "comm_lost_after": self.settings.comm_lost_after,
            "heartbeat_at": _iso(v.heartbeat_wall),
            "via": _where(v.link, v.peer),
            "sysid": v.sysid,
            "compid": v.compid,
            "mavlink": v.protocol_version,
            "autopilot": protocol.AUTOPILOT_NAMES.get(v.autopilot, str(v.autopilot)),
        }

    # ------------------------------------------------------------ heartbeat and comm lost
    async def _watch_loop(self) -> None:
        next_heartbeat = 0.0
        while True:
            now = time.monotonic()
            if now >= next_heartbeat:
                next_heartbeat = now + GCS_HEARTBEAT_INTERVAL
                self._send_gcs_heartbeat()
            for v in list(self.vehicles.values()):
                if not v.comm_lost and now - v.last_heartbeat > self.settings.comm_lost_after:
                    await self._comm_lost(v, now - v.last_heartbeat)
            if len(self._tasks) > 64:
                self._tasks = [t for t in self._tasks if not t.done()]
            await asyncio.sleep(WATCH_INTERVAL)

    def _send_gcs_heartbeat(self) -> None:
        msg = protocol.MAV.MAVLink_heartbeat_message(
            protocol.MAV.MAV_TYPE_GCS, protocol.AUTOPILOT_INVALID, 0, 0, protocol.MAV.MAV_STATE_ACTIVE, 3
        )
        data = protocol.pack(self.sender, msg)
        for link in self.links:
            link.broadcast(data)

    async def _comm_lost(self, v: Vehicle, silent: float) -> None:
        v.comm_lost = True
        v.link_dirty = True
        v.touch()
        log.warning("%s: comm lost (no HEARTBEAT for %.1fs on %s)", v.label, silent, _where(v.link, v.peer))
        await self._alert(
            v, cleared=False, message=f"no HEARTBEAT for {silent:.1f}s on {_where(v.link, v.peer)} (comm lost)"
        )

    def _comm_restored(self, v: Vehicle) -> None:
        v.comm_lost = False
        v.link_dirty = True
        log.info("%s: comm restored", v.label)
        self._tasks.append(asyncio.create_task(self._alert(v, cleared=True, message="HEARTBEAT resumed")))

    async def _alert(self, v: Vehicle, *, cleared: bool, message: str) -> None:
        if not v.registered:
            return
        body = {
            "event_type": "alert",
            "timestamp": utc_now(),
            "entity_id": v.entity_id,
            "code": "comm_lost",
            "severity": "high",
            "message": message,
            "cleared": cleared,
        }
        try:
            await self.nc.publish(topology.event_subject("alert", self.org_id, v.entity_id), encode(body))
        except Exception as exc:  # noqa: BLE001 - logged; the state's comm_lost flag still tells the console
            self._oddity("alert", f"comm-lost alert for {v.label} not published: {exc or type(exc).__name__}")

    # ------------------------------------------------------------ commands
    def _send_to(self, v: Vehicle, msg: Any) -> None:
        v.link.send(protocol.pack(self.sender, msg), v.peer)

    async def _on_command(self, msg: Msg) -> None:
        entity_id = msg.subject.rsplit(".", 1)[-1]
        targets = list(self.vehicles.values()) if entity_id == "broadcast" else []
        if entity_id in self.by_entity:
            targets = [self.by_entity[entity_id]]
        if not targets:
            return  # not one of ours (another bridge's, the simulator's …)
        try:
            command = decode(msg.data, CommandMessage)
        except DecodeError as exc:
            self._oddity("command", f"undecodable command on {msg.subject}: {exc}")
            return
        for v in targets:
            self.stats.commands += 1
            self._tasks.append(asyncio.create_task(self.execute(v, command), name=f"mavlink-cmd-{command.command_id}"))
        self._tasks = [t for t in self._tasks if not t.done()]

    async def execute(self, v: Vehicle, cmd: CommandMessage) -> None:
        """Carry one command out on one vehicle and acknowledge it on NATS."""
        try:
            check_params(cmd.command, cmd.params)
            steps = translate(cmd.command, cmd.params, v)
        except Untranslatable as exc:
            await self._ack(v, cmd.command_id, "failed", f"UNSUPPORTED: {exc}")
            return
        except (DecodeError, KeyError, TypeError, ValueError) as exc:
            await self._ack(v, cmd.command_id, "failed", f"invalid parameters: {exc}")
            return
        log.info("%s: %s → %s", v.label, cmd.command, ", ".join(s.label for s in steps))
        label = ""
        for step in steps:
            label = step.label
            asked = time.time()

            async def progress(text: str, label: str = label) -> None:
                await self._ack(v, cmd.command_id, "accepted", f"{text} ({label})")

            outcome = await self.commands.run(v, step, progress)
            if not outcome.accepted:
                detail = f"{outcome.detail} ({label})"
                if outcome.result in EXPLAINED and await self._text_since(v, asked):
                    detail += f" — {v.messages[-1]['text']}"  # e.g. the PreArm reason ArduPilot sends with DENIED
                log.info("%s: %s failed: %s", v.label, cmd.command, detail)
                await self._ack(v, cmd.command_id, "failed", detail)
                return
        await self._ack(v, cmd.command_id, "completed", f"ACCEPTED ({label})")

    @staticmethod
    async def _text_since(v: Vehicle, since: float, wait: float = TEXT_WAIT) -> bool:
        """Whether the vehicle said something since ``since``; its STATUSTEXT may trail the ACK a little."""
        deadline = time.monotonic() + wait
        while v.last_text_at < since and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return bool(v.messages) and v.last_text_at >= since

    async def _ack(self, v: Vehicle, command_id: str, status: str, detail: str) -> None:
        ack = CommandAck(command_id=command_id, status=status, detail=detail[:1000], timestamp=utc_now())  # type: ignore[arg-type]
        try:
            await self.nc.publish(topology.command_ack_subject(self.org_id, v.entity_id), encode(ack))
            self.stats.acks_sent += 1
        except Exception as exc:  # noqa: BLE001 - the command then expires server-side, as for any silent device
            self._oddity("ack", f"ack of {command_id} not published: {exc or type(exc).__name__}")

    # ------------------------------------------------------------ logging
    def _oddity(self, kind: str, text: str) -> None:
        """Log something odd at most once per ``LOG_EVERY`` per kind (it is counted regardless)."""
        now = time.monotonic()
        if now - self._last_logged.get(kind, -LOG_EVERY) >= LOG_EVERY:
            self._last_logged[kind] = now
            if len(self._last_logged) > 1000:
                self._last_logged.clear()
            log.warning("%s", text)

    async def _stats_loop(self) -> None:
        last: tuple[int, ...] = ()
        while True:
            await asyncio.sleep(STATS_LOG_INTERVAL)
            s = self.stats
            now = (s.messages, s.malformed, s.clashes, s.commands)
            if now != last:
                last = now
                self._log_stats()

    def _log_stats(self) -> None:
        s = self.stats
        log.info(
            "MAVLink: %d vehicles, %d messages (%d malformed, %d unknown ids, %d unmapped, %d clashes),"
            " %d telemetry publishes, %d commands",
            len(self.vehicles),
            s.messages,
            s.malformed,
            sum(s.unknown.values()),
            sum(s.unmapped.values()),
            s.clashes,
            s.published,
            s.commands,
        )


def _where(link: Link, peer: Peer = None) -> str:
    if peer is None:
        return link.name
    host, port = peer
    return f"{link.name} ← {host}:{port}"


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"
