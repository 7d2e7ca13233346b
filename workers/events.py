"""EventWorker: detection, liveness and device alert events.

* ``constellation.events.isr.{org}.{entity}`` — detection events (PRD envelope, ``org_id``
  accepted as an alias): stored in the detection history; a ``HIGH_THREAT`` or
  ``MODERATE_THREAT`` (the upstream client's ``MEDIUM_THREAT`` is read as that) raises
  (or escalates) the track's threat alert; ``lost`` clears it and ``reappeared`` raises it
  again.
* ``constellation.events.{kind}.{org}.{entity}`` with ``event_type`` ``bootsequence`` /
  ``shutdown`` — the entity announces it is up / going down (liveness);
  ``alert`` — a device alert; anything else is accepted and only counted.

Batches are stored in one SQLite transaction and acknowledged after it committed.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from typing import Any

import msgspec
from nats.aio.msg import Msg

from core import topology
from core.contracts.common import DecodeError, decode, decode_object, utc_now
from core.contracts.events import DetectionEvent, GenericEvent
from core.contracts.state import THREAT_ALIASES, THREAT_LEVELS, new_state, threat_word
from core.errors import InvalidMessage, TransientError
from core.topics import Topic
from db import detections as detections_db
from db import retention
from db.detections import DetectionRow
from fabric.state_store import StateStore
from services.alerts.store import AlertService
from services.directory import EntityDirectory, EntityInfo
from services.hub import Update
from workers.base import ConsumerWorker, WorkerContext

log = logging.getLogger("overwatch.workers.events")

MAX_PAYLOAD = 1024 * 1024  # the downstream PRD's event size limit; larger events are dead-lettered
THREATS = {"HIGH_THREAT": "high", "MODERATE_THREAT": "elevated"}  # alert severity by (normalised) level
LIVENESS_TYPES = {"bootsequence", "shutdown"}
LOST_TYPES = {"lost", "object_lost", "detection_lost", "track_lost", "cleared"}
DEVICE_SEVERITIES = {"critical", "high", "elevated", "warning", "info"}
MAX_EVENT_TYPES = 100  # distinct event types counted by name
# Ids a device chooses (alert codes, track ids) end up in alert ids, and alert ids in URLs:
# they follow the subject-token rule, so '/', '.', '?', '#', '%' and ':' never get in.
CODE_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TRACK_RE = topology.TOKEN_RE


def checked_id(value: str, pattern: re.Pattern[str], what: str) -> str:
    """``value`` if it matches ``pattern``; otherwise ``InvalidMessage`` (dead-lettered with the reason)."""
    if not pattern.match(value):
        raise InvalidMessage(f"invalid {what} {value[:80]!r}: must match {pattern.pattern}")
    return value


class EventWorker(ConsumerWorker):
    """Consumes ``constellation.events.>`` through ``event-processor``."""

    name = "events"
    stream = topology.STREAM_EVENTS
    durable = topology.CONSUMER_EVENT
    batch_size = 500

    def __init__(self, ctx: WorkerContext, alerts: AlertService) -> None:
        super().__init__(ctx)
        self.alerts = alerts
        self.directory = EntityDirectory(ctx.db, ctx.hub)
        self.store = StateStore(ctx.kv_state, "events")
        self.by_type: dict[str, int] = {}
        self._last_prune = 0.0

    def _count(self, event_type: str) -> None:
        # Event types are chosen by devices: a bounded number of short names, the rest as "other".
        key = event_type[:64]
        if key not in self.by_type and len(self.by_type) >= MAX_EVENT_TYPES:
            key = "other"
        self.by_type[key] = self.by_type.get(key, 0) + 1

    async def handle(self, msg: Msg) -> None:
        """Single-message path: a batch of one."""
        await self.handle_batch([msg])

    async def handle_batch(self, msgs: Sequence[Msg]) -> None:
        """Validate every event, store detections in one transaction, then acknowledge."""
        rows: list[DetectionRow] = []
        done: list[Msg] = []
        for msg in msgs:
            try:
                row = await self._process(msg)
            except InvalidMessage as exc:
                self.stats.failed += 1
                await self.dead_letter(msg, exc.reason, self.stream)
                await msg.term()
                continue
            except Exception as exc:  # noqa: BLE001 - retried with backoff, then dead-lettered
                await self.retry_or_dead_letter(msg, exc)
                continue
            if row is not None:
                rows.append(row)
            done.append(msg)
        try:
            await detections_db.insert_detections(self.ctx.db, rows)
        except Exception as exc:  # noqa: BLE001
            for msg in done:
                await self.retry_or_dead_letter(msg, TransientError(f"storing detections failed: {exc}"))
            return
        for msg in done:
            await msg.ack()
        self.stats.processed += len(done)
        self.stats.last_message_at = time.time()
        for entity_id in {r.entity_id for r in rows}:
            self.ctx.hub.publish(Update(Topic.DETECTIONS, entity_id))
        await self._maybe_prune()

    async def idle(self) -> None:
        """Prune old detections while idle."""
        await self._maybe_prune()

    async def _maybe_prune(self) -> None:
        if time.monotonic() - self._last_prune > 300:
            self._last_prune = time.monotonic()
            hours = self.ctx.settings.detection_retention_hours
            await retention.prune(self.ctx.db, "detections", hours * 3600, now=self.ctx.clock.now())

    async def _process(self, msg: Msg) -> DetectionRow | None:
        self.reject_server_reply(msg)
        parts = msg.subject.split(".")
        if len(parts) != 5 or parts[1] != "events" or not all(topology.TOKEN_RE.match(p) for p in parts[2:]):
            raise InvalidMessage(f"unexpected event subject {msg.subject!r}")
        kind, org_id, entity_id = parts[2], parts[3], parts[4]
        if len(msg.data) > MAX_PAYLOAD:
            raise InvalidMessage(f"payload of {len(msg.data)} bytes exceeds {MAX_PAYLOAD}")
        info = await self.directory.lookup(entity_id)
        if info is None:
            if msg.metadata.num_delivered < 3:
                raise TransientError(f"unknown entity {entity_id} (registry may be catching up)")
            raise InvalidMessage(f"unknown entity {entity_id}")
        if info.org_id != org_id:
            raise InvalidMessage(f"entity {entity_id} belongs to organisation {info.org_id}, not {org_id}")
        try:
            event = decode(msg.data, GenericEvent)
        except DecodeError as exc:
            raise InvalidMessage(str(exc)) from None
        if kind == "isr" and event.event_type not in LIVENESS_TYPES:
            # The ISR subject carries detections, and (as the upstream client sends them) liveness events.
            return await self._detection(msg, org_id, entity_id)
        if event.resolve_entity_id() not in ("", entity_id):
            raise InvalidMessage(f"payload entity {event.resolve_entity_id()!r} does not match subject")
        self._count(event.event_type)
        if event.event_type == "bootsequence":
            await self._liveness(info, True)
        elif event.event_type == "shutdown":
            await self._liveness(info, False)
        elif event.event_type == "detection":
            return await self._detection(msg, org_id, entity_id)
        elif event.event_type == "alert":
            await self._device_alert(msg, org_id, entity_id, info.name or entity_id)
        return None

    async def _detection(self, msg: Msg, org_id: str, entity_id: str) -> DetectionRow | None:
        try:
            event = decode(msg.data, DetectionEvent)
        except DecodeError as exc:
            raise InvalidMessage(str(exc)) from None
        if event.entity_id != entity_id:
            raise InvalidMessage(f"payload entity_id {event.entity_id!r} does not match subject")
        if event.organization and event.organization != org_id:
            raise InvalidMessage(f"payload organisation {event.organization!r} does not match subject")
        self._count(event.event_type)
        det = event.detection
        if det is None:
            return None
        if not 0.0 <= det.confidence <= 1.0:
            raise InvalidMessage(f"confidence {det.confidence} outside 0..1")
        checked_id(det.track_id, TRACK_RE, "track_id")
        raw_threat = det.metadata.get("threat_level")
        threat = threat_word(raw_threat) if raw_threat not in (None, "") else ""
        if threat is None:
            accepted = ", ".join([*THREAT_LEVELS, *THREAT_ALIASES])
            raise InvalidMessage(f"unknown threat_level {str(raw_threat)[:40]!r}: use one of {accepted}")
        lost = event.event_type in LOST_TYPES or det.metadata.get("event_reason") in LOST_TYPES
        alert_id = f"threat:{entity_id}:{det.track_id}"
        alerts = self.alerts
        if lost:
            await alerts.clear(alert_id, f"{det.label} no longer detected")
        elif threat in THREATS:
            reason = str(
                det.metadata.get("reason")
                or det.metadata.get("threat_reason")
                or f"{det.label} detected with confidence {det.confidence:.2f}"
            )
            name = await self.directory.lookup(entity_id)
            await alerts.raise_alert(
                alert_id,
                kind="threat",
                severity=THREATS[threat],
                org_id=org_id,
                entity_id=entity_id,
                track_id=det.track_id,
                title=f"{threat.replace('_', ' ').title()}: {det.label} at {(name.name if name else '') or entity_id}",
                reason=reason,
                data={"label": det.label, "confidence": det.confidence},
            )
        return DetectionRow(
            entity_id=entity_id,
            org_id=org_id,
            track_id=det.track_id,
            label=det.label[:128],
            confidence=det.confidence,
            threat_level=threat[:32],
            event_type=event.event_type[:64],
            bbox=msgspec.json.encode(det.bbox).decode(),
            metadata=msgspec.json.encode(det.metadata).decode()[:4096],
            ts=det.timestamp or event.timestamp,
            received_at=time.time(),
        )

    async def _liveness(self, info: EntityInfo, up: bool) -> None:
        now = utc_now()

        def mutate(doc: dict[str, Any]) -> bool:
            doc["is_live"] = up
            doc["last_seen"] = now
            # The PRD's statuses: live is active, gone is offline; an error stays until the entity reports otherwise.
            if doc.get("status") != "error":
                doc["status"] = "active" if up else "offline"
            return True

        await self.store.merge(
            info.entity_id,
            mutate,
            create=up,
            defaults=lambda: new_state(info.entity_id, info.org_id, info.entity_type, name=info.name),
        )

    async def _device_alert(self, msg: Msg, org_id: str, entity_id: str, name: str) -> None:
        try:
            doc = decode_object(msg.data)
        except DecodeError as exc:
            raise InvalidMessage(str(exc)) from None
        severity = str(doc.get("severity") or "warning").lower()
        if severity not in DEVICE_SEVERITIES:
            raise InvalidMessage(f"unknown severity {severity!r}")
        message = str(doc.get("message") or "device alert")[:500]
        raw_code = doc.get("code") or "device"
        if isinstance(raw_code, bool) or not isinstance(raw_code, (str, int)):
            raise InvalidMessage(f"alert code must be a string, got {type(raw_code).__name__}")
        code = checked_id(str(raw_code), CODE_RE, "alert code")
        if doc.get("cleared") is True:
            await self.alerts.clear(f"device:{entity_id}:{code}", message)
            return
        await self.alerts.raise_alert(
            f"device:{entity_id}:{code}",
            kind="device",
            severity=severity,
            org_id=org_id,
            entity_id=entity_id,
            title=f"{name}: {code}",
            reason=message,
        )
