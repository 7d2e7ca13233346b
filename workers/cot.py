"""CotGateway: the operating picture out to TAK (``COT_URL``), CoT senders in (``COT_LISTEN``).

**Out.** Every state-cache change marks its entity dirty; the send loop encodes dirty
entities (``services.cot.picture``) at most ``COT_MAX_HZ`` times a second each and offers
the events to every outbound link and every client of a TCP listener, in the format
each wants (CoT XML or TAK protocol v1). Live entities are valid for the offline
timeout; a live entity that has not changed is re-sent before its stale time; the
moment an entity goes offline it is sent once more, already stale. A (re)connected link
or client gets the whole picture at once. Entities of ``COT_ORG`` (what came in over
CoT) are not echoed back out.

**In.** Each event from a listener is parsed by the hardened parser; refusals are
counted by reason and dead-lettered (``constellation.dlq.{COT_ORG}.COT``, at most
``DLQ_PER_SECOND`` copies a second, the rest only counted). A position report's sender
becomes an entity of ``COT_ORG`` (registered on first sight, within
``OVERWATCH_MAX_ENTITIES_PER_ORG``; type, affiliation and name follow its CoT type and
callsign), and the report is published as telemetry on
``constellation.telemetry.{COT_ORG}.{entity}`` — the telemetry worker merges it like any
device's. Its ``stale`` time rides along in ``extras.stale``, which the liveness sweep
honours, so the entity goes offline when the sender said its report expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from collections import Counter, deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import msgspec
from nats.js.errors import APIError

from core import topology
from core.contracts.common import utc_now
from core.contracts.registry import EntityRecord
from core.cot_urls import parse_listen_urls, parse_out_urls
from core.errors import Conflict
from core.topics import Topic
from db import registry as registry_db
from fabric.pubacks import AckedPublisher
from services.cot.event import UNKNOWN_ERROR, CotEvent, iso, to_proto, to_xml
from services.cot.parse import CotRejected, Ping, parse
from services.cot.picture import entity_events
from services.cot.transport import Listener, OutLink, TcpPeer
from services.cot.types import PONG_TYPE, classify
from services.hub import Update
from services.registry import RegistryService
from services.schemas import EntityUpdate, OrgCreate
from services.state_cache import StateCache
from services.state_view import EntityView
from workers.base import (
    DLQ_ORIGINAL_SIZE,
    DLQ_REASON,
    DLQ_STREAM,
    DLQ_SUBJECT,
    DLQ_TIME,
    DLQ_WORKER,
    STORE_REFUSED,
    Worker,
    WorkerContext,
)

log = logging.getLogger("overwatch.workers.cot")

DLQ_STREAM_NAME = "COT"  # the "stream" token of CoT dead letters (they come from sockets, not a stream)
DLQ_PER_SECOND = 20  # dead-letter copies per second; a flood of garbage is counted, not stored
MAX_INFLIGHT = 2000  # telemetry publishes awaiting JetStream's ack before the listener waits
FULL_RECHECK = 2.0  # seconds an organisation found full is believed full
YIELD_EVERY = 200  # entities encoded between two yields to the event loop
Format = tuple[int, bool]  # (tak_proto, stream framing)
UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def entity_id_for(uid: str) -> str:
    """Our entity id for a CoT uid: the uid itself when it is a valid id, else a safe form plus a hash."""
    if topology.TOKEN_RE.match(uid):
        return uid
    digest = hashlib.sha1(uid.encode(), usedforsecurity=False).hexdigest()[:10]
    return f"{UNSAFE.sub('_', uid)[:100]}-{digest}"


def telemetry_payload(ev: CotEvent) -> dict[str, Any]:
    """The telemetry message a CoT position report becomes."""
    glob: dict[str, Any] = {"latitude": ev.lat, "longitude": ev.lon}
    if ev.hae != UNKNOWN_ERROR:
        glob["altitude_msl"] = ev.hae
    if ev.ce != UNKNOWN_ERROR:
        glob["accuracy_h"] = ev.ce
    if ev.le != UNKNOWN_ERROR:
        glob["accuracy_v"] = ev.le
    body: dict[str, Any] = {"timestamp": iso(ev.time), "position": {"global": glob}}
    vfr = {k: v for k, v in (("heading", ev.course), ("groundspeed", ev.speed)) if v is not None}
    if vfr:
        body["vfr"] = vfr
    if ev.battery is not None and 0 <= ev.battery <= 100:
        body["power"] = {"battery_remaining": ev.battery}
    cot = {"uid": ev.uid, "type": ev.type, "how": ev.how, "callsign": ev.callsign}
    if ev.remarks:
        cot["remarks"] = ev.remarks
    body["extras"] = {"stale": iso(ev.stale), "cot": cot}
    return body


@dataclass
class Known:
    """A CoT sender already registered (what the registry says about it)."""

    entity_type: str
    affiliation: str
    name: str


class CotGateway(Worker):
    """The CoT gateway; idle when neither ``COT_URL`` nor ``COT_LISTEN`` is set."""

    name = "cot"

    def __init__(self, ctx: WorkerContext, state_cache: StateCache, registry: RegistryService) -> None:
        super().__init__(ctx)
        self.state_cache = state_cache
        self.registry = registry
        s = ctx.settings
        self.out_urls = parse_out_urls(s.cot_url, s.tak_proto)
        self.listen_urls = parse_listen_urls(s.cot_listen)
        self.org = s.cot_org
        self.out_orgs = {o.strip() for o in s.cot_out_orgs.split(",") if o.strip()} or None
        self.min_interval = 1.0 / s.cot_max_hz
        self.stale_s = s.offline_after
        self.peer_format: Format = (s.tak_proto, True)
        self.tls = {
            "PYTAK_TLS_CLIENT_CERT": s.pytak_tls_client_cert,
            "PYTAK_TLS_CLIENT_KEY": s.pytak_tls_client_key,
            "PYTAK_TLS_CLIENT_CAFILE": s.pytak_tls_client_cafile,
            "PYTAK_TLS_CLIENT_PASSWORD": s.pytak_tls_client_password,
            "PYTAK_TLS_DONT_VERIFY": "1" if s.pytak_tls_dont_verify else "",
            "PYTAK_TLS_DONT_CHECK_HOSTNAME": "1" if s.pytak_tls_dont_check_hostname else "",
            "PYTAK_MULTICAST_LOCAL_ADDR": s.pytak_multicast_local_addr,
        }
        self.links: list[OutLink] = []
        self.listeners: list[Listener] = []
        self.counters: Counter[str] = Counter()
        self.dirty: dict[str, None] = {}
        self.wakeup = asyncio.Event()
        self.last_sent: dict[str, float] = {}  # monotonic time of the entity's last send
        self.sent_live: dict[str, bool] = {}  # liveness the tablets were last told
        self.video: dict[str, str] = {}
        self.known: dict[str, Known] = {}
        self.org_ready = False
        self.full_until = 0.0
        self.dlq_window = (0.0, 0)
        self.publisher: AckedPublisher | None = None
        self.inflight: deque[asyncio.Future[int]] = deque()
        self.enabled = bool(self.out_urls or self.listen_urls)
        self.ready = asyncio.Event()  # set once every listener is bound
        if self.enabled:
            ctx.hub.add_listener(self._on_update)

    # ------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        """Open links and listeners, send changes until stopped."""
        if not self.enabled:
            await self.stopping.wait()
            return
        self.publisher = AckedPublisher(self.ctx.nc)
        max_bytes = self.ctx.settings.cot_max_event_bytes
        self.links = [
            OutLink(url, self.tls, self._snapshot_to, self.handle, self._refuse_from_listener, max_bytes)
            for url in self.out_urls
        ]
        tasks = [
            asyncio.create_task(link.run(self.stopping), name=f"cot-link-{i}") for i, link in enumerate(self.links)
        ]
        self.listeners = [
            Listener(
                url, self.handle, self._refuse_from_listener, self.ctx.settings.cot_max_event_bytes, self._snapshot_to
            )
            for url in self.listen_urls
        ]
        try:
            for listener in self.listeners:
                await listener.start()
            self.ready.set()
            self.dirty.update(dict.fromkeys(self.state_cache.all()))
            await self._send_loop()
        finally:
            self.ready.clear()
            for listener in self.listeners:
                await listener.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _on_update(self, update: Update) -> None:
        if update.topic == Topic.STATE:
            self.dirty[update.key] = None
            self.wakeup.set()
        elif update.topic == Topic.REGISTRY and update.key.startswith("entity."):
            entity_id = update.key.removeprefix("entity.")
            self.video.pop(entity_id, None)
            self.known.pop(entity_id, None)
            self.dirty[entity_id] = None
            self.wakeup.set()

    # ------------------------------------------------------------ out
    def _wanted(self, view: EntityView) -> bool:
        org = view.org_id
        return org in self.out_orgs if self.out_orgs is not None else org != self.org

    async def _send_loop(self) -> None:
        refresh_every = max(self.stale_s / 2, self.min_interval)
        last_refresh = time.monotonic()
        while not self.stopping.is_set():
            self.wakeup.clear()
            now = time.monotonic()
            deferred = False
            done = 0
            for entity_id in list(self.dirty):
                if now - self.last_sent.get(entity_id, -1e9) < self.min_interval:
                    deferred = True  # rate cap: stays dirty, sent when due (latest state wins)
                    continue
                self.dirty.pop(entity_id, None)
                try:
                    await self._send_entity(entity_id, now)
                except Exception:  # one entity's trouble (a registry read) must not stop the picture
                    log.exception("cot: sending %s failed", entity_id)
                done += 1
                if done % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
            if now - last_refresh >= 1.0:
                last_refresh = now
                for entity_id, live in self.sent_live.items():
                    if live and now - self.last_sent.get(entity_id, 0.0) >= refresh_every:
                        self.dirty[entity_id] = None
            wait = self.min_interval / 2 if deferred else 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken(), wait)

    async def _woken(self) -> None:
        await self.wakeup.wait()
        if self.dirty:
            # Gather a burst of changes before encoding (one pass, fewer wake-ups).
            await asyncio.sleep(0.005)

    async def _video_url(self, entity_id: str, entity_type: str) -> str:
        url = self.video.get(entity_id)
        if url is not None:
            return url
        url = ""
        row = await registry_db.get_entity(self.ctx.db, entity_id)
        if row is not None:
            video = msgspec.json.decode(row.video_config or "{}")
            if isinstance(video, dict):
                url = str(video.get("stream_url") or video.get("hls_url") or video.get("webrtc_url") or "")
        base = self.ctx.settings.cot_video_base_url.rstrip("/")
        if not url and base and entity_type == "isr_sensor":
            url = f"{base}/video/{quote(entity_id, safe='')}.mjpg"
        self.video[entity_id] = url
        return url

    async def _send_entity(self, entity_id: str, now: float) -> None:
        view = self.state_cache.view(entity_id)
        if view is None or not self._wanted(view):
            return
        live = view.is_live
        if not live and not self.sent_live.get(entity_id):
            return  # offline, and the tablets already know (or never saw it)
        video = await self._video_url(entity_id, view.entity_type)
        events = entity_events(view, self.stale_s, time.time(), video)
        if not events:
            return
        self.last_sent[entity_id] = now
        self.sent_live[entity_id] = live
        self._offer(events, self.links, self._peers())

    def _peers(self) -> list[TcpPeer]:
        return [peer for listener in self.listeners for peer in listener.peers]

    def _offer(self, events: list[CotEvent], links: list[OutLink], peers: list[TcpPeer]) -> None:
        cache: dict[Format, list[bytes]] = {}

        def encoded(fmt: Format) -> list[bytes]:
            if fmt not in cache:
                cache[fmt] = [to_proto(e, fmt[1]) if fmt[0] else to_xml(e) for e in events]
            return cache[fmt]

        for link in links:
            for data in encoded((link.target.tak_proto, link.target.stream)):
                link.offer(data)
        for peer in peers:
            for data in encoded(self.peer_format):
                peer.offer(data)
        self.counters["sent"] += len(events)

    def _snapshot_to(self, target: OutLink | TcpPeer) -> None:
        """A link (re)connected or a client connected: give it every live entity now."""
        events: list[CotEvent] = []
        wall = time.time()
        for entity_id, view in self.state_cache.views().items():
            if view.is_live and "." not in entity_id and self._wanted(view):
                events.extend(entity_events(view, self.stale_s, wall, self.video.get(entity_id, "")))
        if not events:
            return
        if isinstance(target, OutLink):
            self._offer(events, [target], [])
        else:
            self._offer(events, [], [target])

    # ------------------------------------------------------------ in
    async def handle(self, data: bytes, source: str, peer: TcpPeer | None) -> None:
        """One received event: refuse it, answer a ping, drop our own echo, or apply it."""
        try:
            item = parse(data, self.ctx.settings.cot_max_event_bytes)
        except CotRejected as exc:
            await self._refuse(exc, data, source)
            return
        if isinstance(item, Ping):
            self.counters["ping"] += 1
            if peer is not None:
                wall = time.time()
                pong = CotEvent(
                    uid="takPong", type=PONG_TYPE, how="h-g-i-g-o", time=wall, start=wall, stale=wall + 20, lat=0, lon=0
                )
                peer.offer(to_xml(pong) if self.peer_format[0] == 0 else to_proto(pong, True))
            return
        if item.ours:
            self.counters["loop"] += 1  # our own event heard back (multicast loop, a relaying server)
            return
        try:
            await self._apply(item)
        except CotRejected as exc:
            await self._refuse(exc, data, source)
        except Exception as exc:  # noqa: BLE001 - NATS or the database away: count, log sparingly, go on
            self.counters["apply_failed"] += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"[:200]
            failed = self.counters["apply_failed"]
            if failed == 1 or failed % 1000 == 0:
                log.warning("cot: could not apply an event from %s (%d so far): %s", source, failed, exc)

    async def _apply(self, ev: CotEvent) -> None:
        entity_id = entity_id_for(ev.uid)
        entity_type, affiliation = classify(ev.type)
        name = (ev.callsign or ev.uid)[:255]
        known = self.known.get(entity_id)
        if known is None:
            row = await registry_db.get_entity(self.ctx.db, entity_id)
            if row is not None and row.org_id != self.org:
                raise CotRejected("uid_in_use", f"uid {ev.uid[:60]!r} is entity {entity_id} of another organisation")
            if row is None:
                await self._register(entity_id, entity_type, affiliation, name, ev)
                known = Known(entity_type, affiliation, name)
            else:
                known = Known(row.entity_type, row.affiliation, row.name)
            self.known[entity_id] = known
        if (known.entity_type, known.affiliation, known.name) != (entity_type, affiliation, name):
            # A marker re-typed on a tablet (unknown → hostile) or a renamed callsign.
            update = EntityUpdate(entity_type=entity_type, affiliation=affiliation, name=name)  # type: ignore[arg-type]
            with contextlib.suppress(Exception):
                await self.registry.update_entity(self.org, entity_id, update)
            self.known[entity_id] = Known(entity_type, affiliation, name)
        assert self.publisher is not None
        subject = topology.telemetry_subject(self.org, entity_id)
        while len(self.inflight) >= MAX_INFLIGHT:
            # Backpressure: wait for JetStream to catch up rather than pile up publishes that time out.
            with contextlib.suppress(Exception):
                await self.inflight[0]
            while self.inflight and self.inflight[0].done():
                self.inflight.popleft()
        fut = await self.publisher.submit(subject, msgspec.json.encode(telemetry_payload(ev)))
        fut.add_done_callback(self._acked)
        self.inflight.append(fut)
        self.counters["applied"] += 1
        self.stats.processed += 1
        self.stats.last_message_at = time.time()

    def _acked(self, fut: asyncio.Future[int]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            self.counters["publish_failed"] += 1
            self.stats.last_error = str(fut.exception()) if not fut.cancelled() else "cancelled"

    async def _register(self, entity_id: str, entity_type: str, affiliation: str, name: str, ev: CotEvent) -> None:
        registry = self.registry
        if not self.org_ready:
            with contextlib.suppress(Conflict):
                await registry.create_org(
                    OrgCreate(
                        org_id=self.org,
                        name="TAK",
                        org_type="military",
                        description="CoT senders heard on COT_LISTEN",
                    )
                )
                log.info("cot: created organisation %s for CoT senders", self.org)
            self.org_ready = True
        limit = self.ctx.settings.max_entities_per_org
        full = time.monotonic() < self.full_until
        if full or await registry_db.count_entities(self.ctx.db, self.org) >= limit:
            if not full:
                self.full_until = time.monotonic() + FULL_RECHECK
            raise CotRejected(
                "org_full",
                f"organisation {self.org} has reached its limit of {limit} entities (OVERWATCH_MAX_ENTITIES_PER_ORG);"
                f" uid {ev.uid[:60]!r} was not registered",
            )
        now = utc_now()
        rec = EntityRecord(
            entity_id=entity_id,
            org_id=self.org,
            name=name,
            entity_type=entity_type,  # type: ignore[arg-type]
            affiliation=affiliation,  # type: ignore[arg-type]
            status="active",
            metadata={"registered_by": "cot", "cot_uid": ev.uid, "cot_type": ev.type},
            created_at=now,
            updated_at=now,
        )
        try:
            await registry.register_entity(rec)
            log.info("cot: %s (%s, %s) registered as %s in %s", ev.uid, ev.type, name, entity_id, self.org)
        except Conflict:
            pass  # registered meanwhile by another listener

    async def _refuse_from_listener(self, exc: CotRejected, data: bytes, source: str) -> None:
        await self._refuse(exc, data, source)

    async def _refuse(self, exc: CotRejected, data: bytes, source: str) -> None:
        """Count a refused event and dead-letter a copy (rate-limited) with the reason."""
        self.counters[f"refused_{exc.reason}"] += 1
        self.stats.failed += 1
        seen = self.counters[f"refused_{exc.reason}"]
        if seen == 1 or seen % 1000 == 0:  # a flood logs a line per thousand, not per event
            log.warning("cot: refused an event from %s (%d so far for %s): %s", source, seen, exc.reason, exc.detail)
        self.stats.last_error = str(exc)[:200]
        second, used = self.dlq_window
        now = time.monotonic()
        if now - second >= 1.0:
            second, used = now, 0
        if used >= DLQ_PER_SECOND:
            self.counters["dlq_skipped"] += 1
            self.dlq_window = (second, used)
            return
        self.dlq_window = (second, used + 1)
        limit = self.ctx.settings.dlq_max_payload
        headers = {
            DLQ_REASON: f"{exc.reason}: {exc.detail}"[:500],
            DLQ_SUBJECT: source[:200],
            DLQ_STREAM: DLQ_STREAM_NAME,
            DLQ_WORKER: self.name,
            DLQ_TIME: datetime.now(UTC).isoformat(),
        }
        if len(data) > limit:
            headers[DLQ_ORIGINAL_SIZE] = str(len(data))
            data = data[:limit]
        try:
            await self.ctx.js.publish(topology.dlq_subject(DLQ_STREAM_NAME, self.org), data, headers=headers)
            self.stats.dead_lettered += 1
        except APIError as err:
            if err.err_code != STORE_REFUSED:
                log.warning("cot: dead letter not stored: %s", err)
            self.stats.dlq_refused += 1
            self.dlq_refused[self.org] += 1
        except Exception as err:  # noqa: BLE001 - NATS down: the refusal is still counted
            log.warning("cot: dead letter not stored: %s", err)
