"""NATS topology as data: every stream, consumer, KV bucket and subject in one place.

Nothing else in the code base types a subject string; it calls the builders here,
which validate each token against ``TOKEN_RE`` so ``.``, ``*``, ``>`` and spaces can
never reach a subject. ``ensure_topology`` creates what is missing and updates what
changed at every start (see ``docs/nats.md``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    ExternalStream,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamSource,
    SubjectTransform,
)
from nats.js.errors import APIError, NotFoundError

log = logging.getLogger(__name__)

TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
PREFIX = "constellation"

HOUR = 3600.0  # seconds
DAY = 24 * HOUR


class InvalidToken(ValueError):
    """A subject token (org id, entity id, kind) is not ``[A-Za-z0-9_-]{1,128}``."""


def token(value: str, what: str = "token") -> str:
    """Return ``value`` if it is a valid subject token, else raise ``InvalidToken``."""
    if not isinstance(value, str) or not TOKEN_RE.match(value):
        raise InvalidToken(f"invalid {what} {value!r}: must match [A-Za-z0-9_-]{{1,128}}")
    return value


# ---------------------------------------------------------------- stream names
STREAM_ENTITIES = "CONSTELLATION_ENTITIES"
STREAM_EVENTS = "CONSTELLATION_EVENTS"
STREAM_TELEMETRY = "CONSTELLATION_TELEMETRY"
STREAM_COMMANDS = "CONSTELLATION_COMMANDS"
STREAM_DLQ = "CONSTELLATION_DLQ"
STREAM_TRACKS = "CONSTELLATION_TRACKS"

BUCKET_STATE = "CONSTELLATION_GLOBAL_STATE"
BUCKET_REGISTRY = "CONSTELLATION_REGISTRY"

CONSUMER_ENTITY = "entity-processor"
CONSUMER_TELEMETRY = "telemetry-processor"
CONSUMER_EVENT = "event-processor"
CONSUMER_COMMAND = "command-processor"
# Provisioned for integrators (the downstream PRD's Pattern 1 and Event Stream Consumer); no worker reads it.
CONSUMER_DETECTION = "detection-processor"
SUBJECT_DETECTIONS_ALL = "constellation.events.isr.>"

# ---------------------------------------------------------------- subjects
SUBJECT_ENTITIES_ALL = f"{PREFIX}.entities.>"
SUBJECT_EVENTS_ALL = f"{PREFIX}.events.>"
SUBJECT_TELEMETRY_ALL = f"{PREFIX}.telemetry.>"
SUBJECT_COMMANDS_ALL = f"{PREFIX}.commands.>"
SUBJECT_DLQ_ALL = f"{PREFIX}.dlq.>"
SUBJECT_TRACKS_ALL = f"{PREFIX}.tracks.>"
SUBJECT_VIDEO_ALL = f"{PREFIX}.video.*"

ENTITY_LIFECYCLE = ("created", "updated", "deleted", "status")


def entity_lifecycle_subject(org_id: str, kind: str) -> str:
    """``constellation.entities.{org_id}.{created|updated|deleted|status}``."""
    if kind not in ENTITY_LIFECYCLE:
        raise InvalidToken(f"invalid lifecycle kind {kind!r}")
    return f"{PREFIX}.entities.{token(org_id, 'org_id')}.{kind}"


def telemetry_subject(org_id: str, entity_id: str) -> str:
    """``constellation.telemetry.{org_id}.{entity_id}``."""
    return f"{PREFIX}.telemetry.{token(org_id, 'org_id')}.{token(entity_id, 'entity_id')}"


def tracks_subject(org_id: str) -> str:
    """``constellation.tracks.{org_id}``: track points the telemetry worker sampled (server-internal)."""
    return f"{PREFIX}.tracks.{token(org_id, 'org_id')}"


def detection_subject(org_id: str, entity_id: str) -> str:
    """``constellation.events.isr.{org_id}.{entity_id}`` (detection events, seed format)."""
    return event_subject("isr", org_id, entity_id)


def event_subject(kind: str, org_id: str, entity_id: str) -> str:
    """``constellation.events.{kind}.{org_id}.{entity_id}``."""
    return f"{PREFIX}.events.{token(kind, 'kind')}.{token(org_id, 'org_id')}.{token(entity_id, 'entity_id')}"


def command_subject(org_id: str, entity_id: str) -> str:
    """``constellation.commands.{org_id}.{entity_id}``; ``entity_id='broadcast'`` for all."""
    return f"{PREFIX}.commands.{token(org_id, 'org_id')}.{token(entity_id, 'entity_id')}"


def command_wildcard(org_id: str) -> str:
    """``constellation.commands.{org_id}.*``: every command of an organisation (not the acks)."""
    return f"{PREFIX}.commands.{token(org_id, 'org_id')}.*"


def command_ack_subject(org_id: str, entity_id: str) -> str:
    """``constellation.commands.{org_id}.{entity_id}.ack`` (device → server)."""
    return command_subject(org_id, entity_id) + ".ack"


def command_state_subject(org_id: str, entity_id: str, command_id: str) -> str:
    """``constellation.commands.{org_id}.{entity_id}.state.{command_id}``: the command's journal.

    Every change a node makes to a command (queued, delivered, expired) is a record here, so
    every node's command history is the same; a record is only written with the subject's
    last sequence as expected (compare-and-set), so one node alone delivers a command.
    Devices never see it (they subscribe to ``constellation.commands.{org_id}.*``).
    """
    return f"{command_subject(org_id, entity_id)}.state.{token(command_id, 'command_id')}"


def command_request_subject(org_id: str, entity_id: str, command_id: str) -> str:
    """``constellation.commands.{org_id}.{entity_id}.request.{command_id}``: a hub's command, on an edge box.

    Only sourced from the hub's ``edge_outbox_subject`` (``docs/scale-out.md``); the edge
    queues and delivers it like one of its own.
    """
    return f"{command_subject(org_id, entity_id)}.request.{token(command_id, 'command_id')}"


def video_subject(entity_id: str) -> str:
    """``constellation.video.{entity_id}`` (core NATS, latest JPEG frames)."""
    return f"{PREFIX}.video.{token(entity_id, 'entity_id')}"


def dlq_subject(stream: str, org_id: str | None = None) -> str:
    """``constellation.dlq.{org_id}.{original stream}``; ``constellation.dlq.{stream}`` without one.

    Each organisation's dead letters of each stream are one subject, so the stream's
    per-subject limit is a per-organisation quota (``DLQ_MAX_PER_SUBJECT``). Messages
    whose subject names no organisation (e.g. video frames) keep the shorter layout.
    """
    if org_id is None:
        return f"{PREFIX}.dlq.{token(stream, 'stream')}"
    return f"{PREFIX}.dlq.{token(org_id, 'org_id')}.{token(stream, 'stream')}"


SUBJECT_DLQ_UNOWNED = f"{PREFIX}.dlq.*"  # dead letters of no organisation (and all of them before quotas)

# Header names on dead-lettered messages (documented in docs/nats.md): written by the
# workers, read by the console's dead-letter pages.
DLQ_REASON = "Overwatch-Dlq-Reason"
DLQ_SUBJECT = "Overwatch-Dlq-Subject"
DLQ_STREAM = "Overwatch-Dlq-Stream"
DLQ_SEQUENCE = "Overwatch-Dlq-Sequence"
DLQ_WORKER = "Overwatch-Dlq-Worker"
DLQ_TIME = "Overwatch-Dlq-Time"
DLQ_ORIGINAL_SIZE = "Overwatch-Dlq-Original-Size"  # only on a dead letter whose payload was cut


# ---------------------------------------------------------------- hub and edges (docs/scale-out.md)
STREAM_EDGES = "CONSTELLATION_EDGES"
EDGE_TOKEN = "edge"
SUBJECT_EDGES_ALL = f"{PREFIX}.{EDGE_TOKEN}.>"


def edge_prefix(edge: str) -> str:
    """``constellation.edge.{edge}``: where a hub keeps what it sources from one edge box."""
    return f"{PREFIX}.{EDGE_TOKEN}.{token(edge, 'edge')}"


def edge_subject(edge: str, local: str) -> str:
    """An edge's local subject (``constellation.telemetry.…``) as a hub stores it (``….edge.{edge}.telemetry.…``)."""
    if not local.startswith(f"{PREFIX}."):
        raise InvalidToken(f"not an Overwatch subject: {local!r}")
    return f"{edge_prefix(edge)}.{local.removeprefix(PREFIX + '.')}"


def split_edge(subject: str) -> tuple[str, str]:
    """``(edge, local subject)`` of a subject a hub sourced from an edge; ``("", subject)`` for any other."""
    head = f"{PREFIX}.{EDGE_TOKEN}."
    if not subject.startswith(head):
        return "", subject
    edge, _, rest = subject.removeprefix(head).partition(".")
    return edge, f"{PREFIX}.{rest}"


def edge_outbox_subject(edge: str, org_id: str, entity_id: str, command_id: str) -> str:
    """``constellation.edge.{edge}.outbox.{org_id}.{entity_id}.{command_id}``: a hub's command for an edge's entity."""
    return (
        f"{edge_prefix(edge)}.outbox.{token(org_id, 'org_id')}.{token(entity_id, 'entity_id')}."
        f"{token(command_id, 'command_id')}"
    )


def kv_stream(bucket: str) -> str:
    """Name of the stream backing a KV bucket."""
    return f"KV_{bucket}"


# ---------------------------------------------------------------- declarations
@dataclass(frozen=True)
class StreamSpec:
    """A stream and the share of the JetStream file store it may use."""

    config: StreamConfig
    store_share: float  # fraction of the account's file store reserved as max_bytes


@dataclass(frozen=True)
class BucketSpec:
    """A KV bucket, declared as its backing stream so it can be updated like one."""

    bucket: str
    description: str
    history: int
    store_share: float
    ttl: float | None = None  # in seconds; None keeps values forever


@dataclass(frozen=True)
class ConsumerSpec:
    """A durable pull consumer owned by one worker."""

    stream: str
    config: ConsumerConfig = field(compare=False)


def _stream(
    name: str, subjects: str, description: str, max_age: float, max_msg_size: int, dup_window: float, share: float
) -> StreamSpec:
    return StreamSpec(
        StreamConfig(
            name=name,
            description=description,
            subjects=[subjects],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            max_age=max_age,
            max_msgs=-1,
            max_msg_size=max_msg_size,
            duplicate_window=dup_window,
            num_replicas=1,
            allow_direct=True,
            allow_rollup_hdrs=False,
        ),
        share,
    )


KIB = 1024
MIB = 1024 * KIB
EVENT_MAX_PAYLOAD = 1 * MIB  # the downstream PRD's event size limit (``workers/events.py``)
EVENTS_MAX_MSG_SIZE = 2 * MIB  # = the embedded server's max_payload (``fabric/server.py``)
STATE_TTL = 1 * DAY  # EntityState values expire after a day without a write (``OVERWATCH_STATE_TTL_HOURS``)

# Dead letters kept per organisation and source stream (the DLQ's max_msgs_per_subject). More are
# refused, not stored over older ones: with discard=new, nobody's flood evicts anybody's dead letters.
DLQ_MAX_PER_SUBJECT = 1000

STREAMS: tuple[StreamSpec, ...] = (
    _stream(STREAM_ENTITIES, SUBJECT_ENTITIES_ALL, "Entity lifecycle events", 7 * DAY, 1 * MIB, 120.0, 0.05),
    _stream(
        STREAM_EVENTS,
        SUBJECT_EVENTS_ALL,
        "Detection, liveness and alert events (not a work queue)",
        1 * DAY,
        # As large as the embedded server's max_payload: whatever a client may send is stored, and
        # the event worker dead-letters anything over the PRD's 1 MiB with the reason.
        EVENTS_MAX_MSG_SIZE,
        120.0,
        0.15,
    ),
    _stream(STREAM_TELEMETRY, SUBJECT_TELEMETRY_ALL, "High-rate telemetry", 2 * HOUR, 128 * KIB, 30.0, 0.25),
    _stream(STREAM_COMMANDS, SUBJECT_COMMANDS_ALL, "Commands and device acks", 1 * DAY, 64 * KIB, 120.0, 0.05),
    # What every node's track history is built from: the points the (shared) telemetry worker
    # sampled, so no node reads every telemetry message a second time (``workers/tracks.py``).
    _stream(STREAM_TRACKS, SUBJECT_TRACKS_ALL, "Sampled track points", 2 * HOUR, 4 * KIB, 120.0, 0.02),
    StreamSpec(
        _stream(
            STREAM_DLQ, SUBJECT_DLQ_ALL, "Messages a worker rejected, reason in headers", 7 * DAY, 1 * MIB, 120.0, 0.05
        ).config.evolve(
            discard=DiscardPolicy.NEW, discard_new_per_subject=True, max_msgs_per_subject=DLQ_MAX_PER_SUBJECT
        ),
        0.05,
    ),
)

BUCKETS: tuple[BucketSpec, ...] = (
    BucketSpec(BUCKET_STATE, "Consolidated EntityState per entity_id", history=10, store_share=0.10, ttl=STATE_TTL),
    BucketSpec(BUCKET_REGISTRY, "Organisation and entity registry (source of truth)", history=5, store_share=0.05),
)


def _consumer(
    stream: str,
    durable: str,
    filter_subject: str,
    max_ack_pending: int,
    ack_wait: float,
    description: str = "",
    max_deliver: int = 8,
) -> ConsumerSpec:
    return ConsumerSpec(
        stream,
        ConsumerConfig(
            name=durable,
            durable_name=durable,
            description=description or f"Overwatch {durable}",
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait,
            max_deliver=max_deliver,
            filter_subject=filter_subject,
            max_ack_pending=max_ack_pending,
            max_waiting=64,
        ),
    )


# Both telemetry durables (ours, edge boxes'): the worker holds up to this many, less one fetch, for coalescing.
TELEMETRY_MAX_ACK_PENDING = 20000

CONSUMERS: tuple[ConsumerSpec, ...] = (
    _consumer(STREAM_ENTITIES, CONSUMER_ENTITY, SUBJECT_ENTITIES_ALL, 1000, 30.0),
    _consumer(STREAM_TELEMETRY, CONSUMER_TELEMETRY, SUBJECT_TELEMETRY_ALL, TELEMETRY_MAX_ACK_PENDING, 10.0),
    _consumer(STREAM_EVENTS, CONSUMER_EVENT, SUBJECT_EVENTS_ALL, 5000, 30.0),
    _consumer(STREAM_COMMANDS, CONSUMER_COMMAND, SUBJECT_COMMANDS_ALL, 1000, 30.0),
)
# Shared durables for integrators (NATS readers may use them, never change or delete them). The
# stream keeps limits retention, so an idle one holds nothing back; it only counts what is pending.
INTEGRATOR_CONSUMERS: tuple[ConsumerSpec, ...] = (
    _consumer(
        STREAM_EVENTS,
        CONSUMER_DETECTION,
        SUBJECT_DETECTIONS_ALL,
        1000,
        30.0,
        "Detection events for integrators (downstream PRD); OVERWATCH_DETECTION_PROCESSOR=false removes it",
        max_deliver=-1,
    ),
)


# ---------------------------------------------------------------- hub and edges (docs/scale-out.md)
EDGES_SHARE = 0.15
EDGE_STREAM = _stream(
    STREAM_EDGES,
    SUBJECT_EDGES_ALL,
    "What this hub sources from its edge boxes, and its commands for them (the outbox)",
    1 * DAY,
    EVENTS_MAX_MSG_SIZE,
    120.0,
    EDGES_SHARE,
)
CONSUMER_EDGE_REGISTRY = "edge-registry"
CONSUMER_EDGE_TELEMETRY = "edge-telemetry"
CONSUMER_EDGE_ENTITY = "edge-entity"
EDGE_CONSUMERS: tuple[ConsumerSpec, ...] = (
    _consumer(STREAM_EDGES, CONSUMER_EDGE_REGISTRY, f"{PREFIX}.{EDGE_TOKEN}.*.registry.>", 1000, 30.0),
    _consumer(
        STREAM_EDGES, CONSUMER_EDGE_TELEMETRY, f"{PREFIX}.{EDGE_TOKEN}.*.telemetry.>", TELEMETRY_MAX_ACK_PENDING, 10.0
    ),
    _consumer(STREAM_EDGES, CONSUMER_EDGE_ENTITY, f"{PREFIX}.{EDGE_TOKEN}.*.entities.>", 1000, 30.0),
)
# Per-node projection consumers (``workers/projection.py``): ``ow-{node}-{projection}``.
PROJECTIONS = ("events", "track-points", "commands", "edge-events", "edge-commands")


def projection_consumer(node_id: str, projection: str) -> str:
    """The name of a node's consumer for one projection."""
    return f"ow-{node_id}-{projection}"


def _wild(n: int) -> str:
    """The subject-transform function that copies the n-th wildcard token of the source subject."""
    return "{{wildcard(" + str(n) + ")}}"


def edge_sources(edge: str) -> list[StreamSource]:
    """What a hub's ``CONSTELLATION_EDGES`` sources from one edge box, through the edge's JetStream domain.

    Each edge's subjects are moved under ``constellation.edge.{edge}.`` (subject
    transforms), so nothing of an edge ever lands on a subject the hub's own workers or
    devices use, and nothing is stored twice. Commands: only the device acks and the
    journal come back (the requests came from here).
    """
    api = ExternalStream(api=f"$JS.{token(edge, 'edge')}.API")
    head = edge_prefix(edge)

    def source(stream: str, *transforms: tuple[str, str]) -> StreamSource:
        return StreamSource(
            name=stream,
            external=api,
            subject_transforms=[SubjectTransform(src=src, dest=dest) for src, dest in transforms],
        )

    return [
        source(STREAM_TELEMETRY, (SUBJECT_TELEMETRY_ALL, f"{head}.telemetry.>")),
        source(STREAM_EVENTS, (SUBJECT_EVENTS_ALL, f"{head}.events.>")),
        source(STREAM_ENTITIES, (SUBJECT_ENTITIES_ALL, f"{head}.entities.>")),
        source(
            STREAM_COMMANDS,
            (f"{PREFIX}.commands.*.*.ack", f"{head}.commands.{_wild(1)}.{_wild(2)}.ack"),
            (f"{PREFIX}.commands.*.*.state.*", f"{head}.commands.{_wild(1)}.{_wild(2)}.state.{_wild(3)}"),
        ),
        source(kv_stream(BUCKET_REGISTRY), (f"$KV.{BUCKET_REGISTRY}.>", f"{head}.registry.>")),
    ]


def hub_outbox_source(edge: str, hub_domain: str) -> StreamSource:
    """What an edge box's ``CONSTELLATION_COMMANDS`` sources from the hub: its own outbox, as requests."""
    return StreamSource(
        name=STREAM_EDGES,
        external=ExternalStream(api=f"$JS.{token(hub_domain, 'hub domain')}.API"),
        subject_transforms=[
            SubjectTransform(
                src=f"{edge_prefix(edge)}.outbox.*.*.*",
                dest=f"{PREFIX}.commands.{_wild(1)}.{_wild(2)}.request.{_wild(3)}",
            )
        ],
    )


def source_key(source: StreamSource) -> tuple[object, ...]:
    """What identifies a source and how it is read (the server adds defaults we do not compare)."""
    external = source.external.api if source.external else ""
    transforms = tuple((t.src, t.dest) for t in source.subject_transforms or ())
    return (source.name, external, source.filter_subject or "", transforms)


def bucket_stream_config(spec: BucketSpec, max_bytes: int) -> StreamConfig:
    """The backing stream of a KV bucket, as nats-py's ``create_key_value`` would build it."""
    return StreamConfig(
        name=kv_stream(spec.bucket),
        description=spec.description,
        subjects=[f"$KV.{spec.bucket}.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        allow_direct=True,
        allow_rollup_hdrs=True,
        deny_delete=True,
        discard=DiscardPolicy.NEW,
        max_age=spec.ttl or 0.0,
        # The server refuses a duplicate window longer than the values live.
        duplicate_window=min(120.0, spec.ttl) if spec.ttl else 120.0,
        max_bytes=max_bytes,
        max_msgs=-1,
        max_msg_size=1 * MIB,
        max_msgs_per_subject=spec.history,
        num_replicas=1,
    )


class TopologyError(Exception):
    """A stream, bucket or consumer could not be created or brought up to date."""


# What a stream holds and how it is stored and bounded (the NATS console shows these too).
STREAM_STORAGE_FIELDS = (
    "subjects",
    "retention",
    "storage",
    "discard",
    "max_age",
    "max_msgs",
    "max_bytes",
    "max_msg_size",
)
# Fields we declare and therefore compare; anything else is the server's business.
_STREAM_FIELDS = (
    *STREAM_STORAGE_FIELDS,
    "duplicate_window",
    "allow_direct",
    "allow_rollup_hdrs",
    "deny_delete",
    "max_msgs_per_subject",
    "discard_new_per_subject",
    "description",
    "num_replicas",
)
_CONSUMER_FIELDS = (
    "deliver_policy",
    "ack_policy",
    "ack_wait",
    "max_deliver",
    "filter_subject",
    "max_ack_pending",
    "max_waiting",
    "description",
)


def desired_streams(
    max_file_store: int | None,
    dlq_max_per_subject: int = DLQ_MAX_PER_SUBJECT,
    state_ttl: float = STATE_TTL,
    replicas: int = 1,
    edges: tuple[str, ...] = (),
    leaf: tuple[str, str] | None = None,
) -> list[StreamConfig]:
    """All stream configs (plain and KV-backing), with ``max_bytes`` sized to the store.

    ``state_ttl`` (seconds) is how long an EntityState value lives without a write;
    ``replicas`` is each stream's and bucket's replica count (``NATS_REPLICAS``). A hub
    (``edges``) gets ``CONSTELLATION_EDGES`` sourcing from each edge; an edge box
    (``leaf=(its domain, the hub's domain)``) sources its commands from the hub's outbox.
    """
    out: list[StreamConfig] = []
    specs = (*STREAMS, EDGE_STREAM) if edges else STREAMS
    for spec in specs:
        mb = int(max_file_store * spec.store_share) if max_file_store else -1
        config = spec.config.evolve(max_bytes=mb, num_replicas=replicas)
        if config.name == STREAM_DLQ:
            config = config.evolve(max_msgs_per_subject=dlq_max_per_subject)
        if config.name == STREAM_EDGES:
            config = config.evolve(sources=[src for edge in edges for src in edge_sources(edge)])
        if config.name == STREAM_COMMANDS and leaf is not None:
            config = config.evolve(sources=[hub_outbox_source(*leaf)])
        out.append(config)
    for bucket in BUCKETS:
        mb = int(max_file_store * bucket.store_share) if max_file_store else -1
        if bucket.bucket == BUCKET_STATE:
            bucket = replace(bucket, ttl=state_ttl)
        out.append(bucket_stream_config(bucket, mb).evolve(num_replicas=replicas))
    return out


def _diff(current: object, wanted: object, fields: tuple[str, ...]) -> list[str]:
    changed = []
    if isinstance(wanted, StreamConfig) and isinstance(current, StreamConfig):
        sourced = sorted(source_key(s) for s in current.sources or ())
        if sourced != sorted(source_key(s) for s in wanted.sources or ()):
            changed.append("sources")
    for name in fields:
        want = getattr(wanted, name)
        have = getattr(current, name, None)
        if want is None:
            continue
        if isinstance(want, float) and isinstance(have, (int, float)):
            if abs(want - have) > 1e-6:
                changed.append(name)
        elif want != have:
            changed.append(name)
    return changed


async def ensure_topology(
    js: JetStreamContext,
    max_file_store: int | None,
    dlq_max_per_subject: int = DLQ_MAX_PER_SUBJECT,
    state_ttl: float = STATE_TTL,
    integrator_consumers: bool = True,
    replicas: int = 1,
    edges: tuple[str, ...] = (),
    leaf: tuple[str, str] | None = None,
) -> dict[str, str]:
    """Create missing streams, buckets and consumers; update those whose config changed.

    Returns ``{name: "created" | "updated" | "ok" | "removed"}``. ``integrator_consumers=False``
    removes ``detection-processor`` (and never creates it). ``replicas``, ``edges`` and
    ``leaf`` as for ``desired_streams`` (a changed replica count is applied to existing
    streams and buckets). Raises ``TopologyError`` with the server's reason when a change
    cannot be applied (e.g. retention of a live stream, or more replicas than servers).
    """
    report: dict[str, str] = {}
    for config in desired_streams(max_file_store, dlq_max_per_subject, state_ttl, replicas, edges, leaf):
        if config.name == STREAM_DLQ:
            await _prepare_dlq(js, config)
        report[config.name or "?"] = await _ensure_stream(js, config)
    for spec in (*CONSUMERS, *(EDGE_CONSUMERS if edges else ())):
        report[f"{spec.stream}/{spec.config.durable_name}"] = await _ensure_consumer(js, spec)
    for spec in INTEGRATOR_CONSUMERS:
        name = f"{spec.stream}/{spec.config.durable_name}"
        if integrator_consumers:
            report[name] = await _ensure_consumer(js, spec)
        elif await _remove_consumer(js, spec):
            report[name] = "removed"
    return report


async def _remove_consumer(js: JetStreamContext, spec: ConsumerSpec) -> bool:
    try:
        await js.delete_consumer(spec.stream, spec.config.durable_name or "")
    except NotFoundError:
        return False
    log.info("removed consumer %s/%s (switched off)", spec.stream, spec.config.durable_name)
    return True


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> str:
    name = config.name or ""
    try:
        info = await js.stream_info(name)
    except NotFoundError:
        try:
            await js.add_stream(config)
        except APIError as exc:
            raise TopologyError(f"cannot create stream {name}: {exc.description}") from None
        log.info("created stream %s", name)
        return "created"
    changed = _diff(info.config, config, _STREAM_FIELDS)
    if not changed:
        return "ok"
    try:
        await js.update_stream(config)
    except APIError as exc:
        raise TopologyError(
            f"stream {name} exists with a different {', '.join(changed)} and the server refused the update: "
            f"{exc.description}. Migrate or delete the stream by hand."
        ) from None
    log.info("updated stream %s (%s)", name, ", ".join(changed))
    return "updated"


async def _ensure_consumer(js: JetStreamContext, spec: ConsumerSpec) -> str:
    durable = spec.config.durable_name or ""
    try:
        info = await js.consumer_info(spec.stream, durable)
    except NotFoundError:
        info = None
    if info is not None and not _diff(info.config, spec.config, _CONSUMER_FIELDS):
        return "ok"
    try:
        await js.add_consumer(spec.stream, spec.config)
    except APIError as exc:
        raise TopologyError(f"cannot create or update consumer {spec.stream}/{durable}: {exc.description}") from None
    state = "created" if info is None else "updated"
    log.info("%s consumer %s/%s", state, spec.stream, durable)
    return state


# ---------------------------------------------------------------- dead-letter quotas
async def _prepare_dlq(js: JetStreamContext, wanted: StreamConfig) -> None:
    """Bring an existing dead-letter stream under per-organisation quotas without evicting anything.

    Before quotas, all organisations' dead letters of a stream shared
    ``constellation.dlq.{stream}``; a per-subject limit would keep only the newest of
    them. So first the stream stops evicting (``discard=new``), then every such dead
    letter that names an organisation is moved to ``constellation.dlq.{org}.{stream}``
    (copy, then delete), and only then does ``_ensure_stream`` apply the limit — which
    drops, oldest first, what an organisation holds beyond its quota (logged). A stream
    that already has the wanted limit costs one ``STREAM.INFO``.
    """
    try:
        info = await js.stream_info(STREAM_DLQ)
    except NotFoundError:
        return
    current = info.config.max_msgs_per_subject or -1
    limit = wanted.max_msgs_per_subject or -1
    if current == limit:
        return
    if info.config.discard != DiscardPolicy.NEW:
        try:
            await js.update_stream(info.config.evolve(discard=DiscardPolicy.NEW))
        except APIError as exc:
            raise TopologyError(f"cannot stop {STREAM_DLQ} evicting dead letters: {exc.description}") from None
    if current <= 0:
        moved = await _move_unowned_dead_letters(js)
        if moved:
            log.info("%s: moved %d dead letters to their organisation's subject", STREAM_DLQ, moved)
    if limit > 0 and (current <= 0 or limit < current):
        counts = (await js.stream_info(STREAM_DLQ, subjects_filter=SUBJECT_DLQ_ALL)).state.subjects or {}
        over = sum(n - limit for n in counts.values() if n > limit)
        if over:
            log.warning(
                "%s: %d dead letters beyond %d per organisation and stream are dropped", STREAM_DLQ, over, limit
            )


async def _move_unowned_dead_letters(js: JetStreamContext) -> int:
    # Imported here: the layout reader derives itself from this module's subject builders.
    from core.subjects import org_of_subject

    moved, seq = 0, 1
    while True:
        try:
            msg = await js.get_msg(STREAM_DLQ, seq=seq, subject=SUBJECT_DLQ_UNOWNED, next=True, direct=True)
        except NotFoundError:
            return moved
        seq = int(msg.seq or 0) + 1
        headers = {str(k): str(v) for k, v in (msg.headers or {}).items()}
        stream = (msg.subject or "").rsplit(".", 1)[-1]
        org = org_of_subject(headers.get("Overwatch-Dlq-Subject", ""))
        if org is None or not TOKEN_RE.match(stream):
            continue  # no organisation: stays where it is
        # Server headers (sequence, time, the old Nats-Msg-Id within the duplicate window) stay behind.
        kept = {k: v for k, v in headers.items() if not k.lower().startswith("nats-")}
        try:
            await js.publish(dlq_subject(stream, org), msg.data or b"", headers=kept)
        except APIError:
            # The stream is full (it no longer evicts): free this message's space first.
            await js.delete_msg(STREAM_DLQ, int(msg.seq or 0))
            await js.publish(dlq_subject(stream, org), msg.data or b"", headers=kept)
        else:
            await js.delete_msg(STREAM_DLQ, int(msg.seq or 0))
        moved += 1
