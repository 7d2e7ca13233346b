"""Detection, liveness and device alert events: the shared ``EventWorker`` and the per-node ``EventProjector``.

* ``constellation.events.isr.{org}.{entity}`` — detection events (PRD envelope, ``org_id``
  accepted as an alias): stored in the detection history; a ``HIGH_THREAT`` or
  ``MODERATE_THREAT`` (the upstream client's ``MEDIUM_THREAT`` is read as that) raises
  (or escalates) the track's threat alert; ``lost`` clears it and ``reappeared`` raises it
  again.
* ``constellation.events.{kind}.{org}.{entity}`` with ``event_type`` ``bootsequence`` /
  ``shutdown`` — the entity announces it is up / going down (liveness);
  ``alert`` — a device alert; anything else is accepted and only counted.

Two readers share the parsing (``EventParser``):

* ``EventWorker`` — the shared durable ``event-processor`` (each message to one node): what
  is done once for everyone, the liveness write into KV, and dead-lettering what is invalid;
* ``EventProjector`` — a per-node consumer (``workers/projection.py``): every node stores
  every detection and raises every alert in its own SQLite, stamped with the stream's time
  so all nodes hold the same history. Invalid events are skipped there (the shared worker
  dead-letters them once).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
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
from db.detections import DetectionRow
from fabric.state_store import StateStore
from services.alerts.store import AlertService
from services.directory import EntityDirectory, EntityInfo
from services.hub import Update
from workers.base import ConsumerWorker, WorkerContext, server_reply
from workers.projection import Batch, ProjectionWorker, RegistryWait, stream_iso, stream_time
from workers.telemetry import check_owner

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


@dataclass(frozen=True)
class ParsedEvent:
    """A valid event: where it came from and what it says."""

    kind: str
    org_id: str
    entity_id: str
    info: EntityInfo
    event_type: str
    detection: DetectionEvent | None = None  # a detection (ISR subject, or ``event_type`` detection)
    liveness: bool | None = None  # bootsequence (True) / shutdown (False)
    device_alert: dict[str, Any] | None = None


class UnknownEntity(Exception):
    """The event names an entity this node's registry does not know (yet)."""


def count_type(by_type: dict[str, int], event_type: str) -> None:
    """Count an event type; device-chosen names are bounded, the rest counted as "other"."""
    key = event_type[:64]
    if key not in by_type and len(by_type) >= MAX_EVENT_TYPES:
        key = "other"
    by_type[key] = by_type.get(key, 0) + 1


class EventParser:
    """Validation shared by both readers; raises ``InvalidMessage`` or ``UnknownEntity``."""

    def __init__(self, directory: EntityDirectory) -> None:
        self.directory = directory

    async def parse(self, subject: str, data: bytes, edge: str = "") -> ParsedEvent:
        """Check subject, size, entity, organisation, owner and payload; decode what the event type needs.

        ``edge``: the edge box a hub sourced the event from (``subject`` is then the edge's own).
        """
        parts = subject.split(".")
        if len(parts) != 5 or parts[1] != "events" or not all(topology.TOKEN_RE.match(p) for p in parts[2:]):
            raise InvalidMessage(f"unexpected event subject {subject!r}")
        kind, org_id, entity_id = parts[2], parts[3], parts[4]
        if len(data) > MAX_PAYLOAD:
            raise InvalidMessage(f"payload of {len(data)} bytes exceeds {MAX_PAYLOAD}")
        info = await self.directory.lookup(entity_id)
        if info is None:
            raise UnknownEntity(entity_id)
        check_owner(info, org_id, edge)
        try:
            event = decode(data, GenericEvent)
        except DecodeError as exc:
            raise InvalidMessage(str(exc)) from None
        if kind == "isr" and event.event_type not in LIVENESS_TYPES:
            # The ISR subject carries detections, and (as the upstream client sends them) liveness events.
            return self._detection(data, kind, org_id, entity_id, info)
        if event.resolve_entity_id() not in ("", entity_id):
            raise InvalidMessage(f"payload entity {event.resolve_entity_id()!r} does not match subject")
        if event.event_type in LIVENESS_TYPES:
            return ParsedEvent(
                kind, org_id, entity_id, info, event.event_type, liveness=event.event_type == "bootsequence"
            )
        if event.event_type == "detection":
            return self._detection(data, kind, org_id, entity_id, info)
        if event.event_type == "alert":
            return ParsedEvent(kind, org_id, entity_id, info, event.event_type, device_alert=_device_alert(data))
        return ParsedEvent(kind, org_id, entity_id, info, event.event_type)

    def _detection(self, data: bytes, kind: str, org_id: str, entity_id: str, info: EntityInfo) -> ParsedEvent:
        try:
            event = decode(data, DetectionEvent)
        except DecodeError as exc:
            raise InvalidMessage(str(exc)) from None
        if event.entity_id != entity_id:
            raise InvalidMessage(f"payload entity_id {event.entity_id!r} does not match subject")
        if event.organization and event.organization != org_id:
            raise InvalidMessage(f"payload organisation {event.organization!r} does not match subject")
        det = event.detection
        if det is not None:
            if not 0.0 <= det.confidence <= 1.0:
                raise InvalidMessage(f"confidence {det.confidence} outside 0..1")
            checked_id(det.track_id, TRACK_RE, "track_id")
            raw_threat = det.metadata.get("threat_level")
            if raw_threat not in (None, "") and threat_word(raw_threat) is None:
                accepted = ", ".join([*THREAT_LEVELS, *THREAT_ALIASES])
                raise InvalidMessage(f"unknown threat_level {str(raw_threat)[:40]!r}: use one of {accepted}")
        return ParsedEvent(kind, org_id, entity_id, info, event.event_type, detection=event)


def _device_alert(data: bytes) -> dict[str, Any]:
    try:
        doc = decode_object(data)
    except DecodeError as exc:
        raise InvalidMessage(str(exc)) from None
    severity = str(doc.get("severity") or "warning").lower()
    if severity not in DEVICE_SEVERITIES:
        raise InvalidMessage(f"unknown severity {severity!r}")
    raw_code = doc.get("code") or "device"
    if isinstance(raw_code, bool) or not isinstance(raw_code, (str, int)):
        raise InvalidMessage(f"alert code must be a string, got {type(raw_code).__name__}")
    return {
        "severity": severity,
        "message": str(doc.get("message") or "device alert")[:500],
        "code": checked_id(str(raw_code), CODE_RE, "alert code"),
        "cleared": doc.get("cleared") is True,
    }


class EventWorker(ConsumerWorker):
    """Consumes ``constellation.events.>`` through the shared ``event-processor``: liveness into KV, dead letters."""

    name = "events"
    stream = topology.STREAM_EVENTS
    durable = topology.CONSUMER_EVENT
    batch_size = 500

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        self.directory = EntityDirectory(ctx.db, ctx.hub)
        self.parser = EventParser(self.directory)
        self.store = StateStore(ctx.kv_state, "events")
        self.by_type: dict[str, int] = {}

    async def handle(self, msg: Msg) -> None:
        """Validate one event; write liveness into KV."""
        self.reject_server_reply(msg)
        edge, local = topology.split_edge(msg.subject)
        try:
            event = await self.parser.parse(local, msg.data, edge)
        except UnknownEntity as exc:
            if msg.metadata.num_delivered < 3:
                raise TransientError(f"unknown entity {exc} (registry may be catching up)") from None
            raise InvalidMessage(f"unknown entity {exc}") from None
        count_type(self.by_type, event.event_type)
        if event.liveness is not None:
            await self._liveness(event.info, event.liveness)

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


class EventProjector(ProjectionWorker):
    """This node's detection history and event-driven alerts, from every event (``ow-{node}-events``)."""

    name = "events-projection"
    stream = topology.STREAM_EVENTS
    filter_subject = topology.SUBJECT_EVENTS_ALL
    projection = "events"
    adopt_durable = topology.CONSUMER_EVENT
    retention = ("detections", "detection_retention_hours")

    def __init__(self, ctx: WorkerContext, alerts: AlertService) -> None:
        super().__init__(ctx)
        self.alerts = alerts
        self.directory = EntityDirectory(ctx.db, ctx.hub)
        self.parser = EventParser(self.directory)
        self.registry = RegistryWait(self.directory, self.stopping)
        self.by_type: dict[str, int] = {}
        self.skipped = 0  # invalid events (the shared worker dead-letters them)
        self.unknown = 0  # events of entities this node's registry never learnt in time

    async def has_history(self) -> bool:
        """An upgraded node already stored detections through the shared durable."""
        return bool(await self.ctx.db.scalar("SELECT 1 FROM detections LIMIT 1"))

    async def _parse(self, msg: Msg) -> ParsedEvent | None:
        edge, subject = topology.split_edge(msg.subject)
        try:
            return await self.parser.parse(subject, msg.data, edge)
        except InvalidMessage:
            self.skipped += 1
            return None
        except UnknownEntity as exc:
            # This node's registry projection may be behind the stream: give it a moment, once per entity.
            if await self.registry.lookup(str(exc)) is None:
                self.unknown += 1
                log.warning("%s: %s names an entity this node does not know; skipped", self.name, msg.subject)
                return None
        try:
            return await self.parser.parse(subject, msg.data, edge)
        except (InvalidMessage, UnknownEntity):
            self.skipped += 1
            return None

    async def prepare(self, msgs: Sequence[Msg]) -> Batch:
        """Detections become rows (written with the cursor); alerts are raised or cleared at once (idempotent)."""
        rows: list[DetectionRow] = []
        for msg in msgs:
            if server_reply(msg):  # the shared worker dead-letters it
                self.skipped += 1
                continue
            event = await self._parse(msg)
            if event is None:
                continue
            count_type(self.by_type, event.event_type)
            at = stream_iso(msg)
            if event.detection is not None:
                row = await self._detection(event, event.detection, at, stream_time(msg).timestamp())
                if row is not None:
                    rows.append(row)
            elif event.device_alert is not None:
                await self._device_alert(event, event.device_alert, at)
        batch = Batch()
        if rows:

            async def write(conn: Any) -> None:
                await detections_db.insert_detections_in(conn, rows)

            async def notify() -> None:
                for entity_id in {r.entity_id for r in rows}:
                    self.ctx.hub.publish(Update(Topic.DETECTIONS, entity_id))

            batch.writes.append(write)
            batch.after.append(notify)
        batch.after.append(self.prune_old)
        return batch

    async def _detection(
        self, event: ParsedEvent, det_event: DetectionEvent, at: str, stored: float
    ) -> DetectionRow | None:
        det = det_event.detection
        if det is None:
            return None
        raw_threat = det.metadata.get("threat_level")
        threat = (threat_word(raw_threat) or "") if raw_threat not in (None, "") else ""
        lost = det_event.event_type in LOST_TYPES or det.metadata.get("event_reason") in LOST_TYPES
        entity_id = event.entity_id
        alert_id = f"threat:{entity_id}:{det.track_id}"
        alerts = self.alerts
        if lost:
            await alerts.clear(alert_id, f"{det.label} no longer detected", at=at)
        elif threat in THREATS:
            reason = str(
                det.metadata.get("reason")
                or det.metadata.get("threat_reason")
                or f"{det.label} detected with confidence {det.confidence:.2f}"
            )
            await alerts.raise_alert(
                alert_id,
                kind="threat",
                severity=THREATS[threat],
                org_id=event.org_id,
                entity_id=entity_id,
                track_id=det.track_id,
                title=f"{threat.replace('_', ' ').title()}: {det.label} at {event.info.name or entity_id}",
                reason=reason,
                # Marked so the rules engine never adopts it as a default threat rule's alert and
                # clears it when the state holds no such track: it is cleared by a ``lost`` event.
                data={"label": det.label, "confidence": det.confidence, "source": "detection"},
                at=at,
            )
        return DetectionRow(
            entity_id=entity_id,
            org_id=event.org_id,
            track_id=det.track_id,
            label=det.label[:128],
            confidence=det.confidence,
            threat_level=threat[:32],
            event_type=det_event.event_type[:64],
            bbox=msgspec.json.encode(det.bbox).decode(),
            metadata=msgspec.json.encode(det.metadata).decode()[:4096],
            ts=det.timestamp or det_event.timestamp,
            # When the stream stored it: the same on every node, so every node's history is the same.
            received_at=stored,
        )

    async def _device_alert(self, event: ParsedEvent, alert: dict[str, Any], at: str) -> None:
        code, message = alert["code"], alert["message"]
        alert_id = f"device:{event.entity_id}:{code}"
        if alert["cleared"]:
            await self.alerts.clear(alert_id, message, at=at)
            return
        await self.alerts.raise_alert(
            alert_id,
            kind="device",
            severity=alert["severity"],
            org_id=event.org_id,
            entity_id=event.entity_id,
            title=f"{event.info.name or event.entity_id}: {code}",
            reason=message,
            at=at,
        )
