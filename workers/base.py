"""The worker lifecycle skeleton every NATS consumer shares.

A ``ConsumerWorker`` binds to its durable pull consumer, fetches batches and hands
each message to ``handle``. The outcome decides the acknowledgement:

* returns normally → ``ack``;
* raises ``InvalidMessage`` → copy to ``CONSTELLATION_DLQ`` with the reason, ``term``
  (per organisation: ``constellation.dlq.{org}.{stream}``, a quota each, payload cut
  to ``OVERWATCH_DLQ_MAX_PAYLOAD``; a copy the full quota refuses is counted);
* raises ``TransientError`` (or anything unexpected) → ``nak`` with a growing delay,
  and after the last allowed delivery → dead-letter, so one poisoned message never
  blocks the consumer.

``WorkerManager`` runs every worker as a task and restarts one that crashes.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
from nats.aio.msg import Msg
from nats.js.errors import APIError
from opentelemetry.trace import NoOpTracer, SpanKind, Tracer

from core import topology
from core.clock import SYSTEM_CLOCK, Clock
from core.errors import InvalidMessage, TransientError
from core.subjects import org_of_subject
from fabric.pull import PullConsumer

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue

    from core.settings import Settings
    from db.database import Database
    from services.hub import Hub

log = logging.getLogger("overwatch.workers")

# Header names on dead-lettered messages (documented in docs/nats.md).
DLQ_REASON = "Overwatch-Dlq-Reason"
DLQ_SUBJECT = "Overwatch-Dlq-Subject"
DLQ_STREAM = "Overwatch-Dlq-Stream"
DLQ_SEQUENCE = "Overwatch-Dlq-Sequence"
DLQ_WORKER = "Overwatch-Dlq-Worker"
DLQ_TIME = "Overwatch-Dlq-Time"
DLQ_ORIGINAL_SIZE = "Overwatch-Dlq-Original-Size"  # only on a dead letter whose payload was cut
STORE_REFUSED = 10077  # JetStream err_code: a stream limit refused the message (discard=new)

# The dead-letter reason for a server reply found in an ingest stream (see ``server_reply``).
REPLY_INJECTION = "a NATS server reply redirected into this subject (reply-subject injection)"

# Headers only the server puts on its replies (direct-get responses): a device's own publish never carries them.
REPLY_HEADERS = (
    "Nats-Stream",
    "Nats-Sequence",
    "Nats-Subject",
    "Nats-Time-Stamp",
    "Nats-Num-Pending",
    "Nats-Last-Sequence",
)
PUBACK_KEYS = frozenset(("stream", "seq", "duplicate", "domain", "val", "batch", "count"))
JS_API_TYPE = "io.nats.jetstream.api."
REPLY_PREFIXES = (b'{"type":', b'{"stream":', b'{"error":')

NAK_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0)  # seconds, by delivery count


@dataclass
class WorkerContext:
    """Everything a worker may use, built once by the runtime."""

    settings: Settings
    nc: NATS
    js: JetStreamContext
    kv_state: KeyValue
    kv_registry: KeyValue
    db: Database
    hub: Hub
    tracer: Tracer = field(default_factory=NoOpTracer)  # a real one only when OTLP export is on
    clock: Clock = SYSTEM_CLOCK  # time for time-driven workers (rules, liveness sweep, expiry)
    node_id: str = "node"  # this node's stable id (``app/node.py``): names its projection consumers


@dataclass
class WorkerStats:
    """Counters shown on the health endpoint and exported as metrics."""

    processed: int = 0
    failed: int = 0
    dead_lettered: int = 0
    dlq_refused: int = 0  # dead letters the organisation's quota (or a full stream) refused
    dlq_truncated: int = 0  # dead letters stored with a cut payload
    naks: int = 0
    reply_injections: int = 0  # server replies found in an ingest stream, dead-lettered (see ``server_reply``)
    restarts: int = 0
    last_error: str = ""
    last_message_at: float = 0.0
    started_at: float = field(default_factory=time.time)


class Worker:
    """Base class: a named long-running task with stats and a stop signal."""

    name = "worker"

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.stats = WorkerStats()
        self.stopping = asyncio.Event()
        self.dlq_refused: Counter[str] = Counter()  # by organisation ("" = none)

    async def run(self) -> None:
        """Run until ``stopping`` is set. Subclasses override."""
        await self.stopping.wait()

    async def dead_letter(self, msg: Msg, reason: str, stream: str, org_id: str | None = None) -> bool:
        """Copy ``msg`` to ``constellation.dlq.{org}.{stream}`` with the reason in headers.

        The organisation is the original subject's (the one its credentials may publish
        on), or ``org_id`` from the registry for subjects that carry none. A payload
        over ``dlq_max_payload`` is cut, its size kept in ``Overwatch-Dlq-Original-Size``.
        Returns False when the organisation's quota (or the whole stream) is full: the
        copy is refused, counted and logged, never stored over anyone's older dead
        letters; the caller ends the message either way. Any other failure (NATS down)
        raises, so the message stays unacknowledged.
        """
        seq = ""
        with contextlib.suppress(Exception):
            seq = str(msg.metadata.sequence.stream)
        # Subjects without an organisation token (video frames) take the caller's, from the registry.
        org_id = org_of_subject(msg.subject) or org_id
        headers = {
            DLQ_REASON: reason[:500],
            DLQ_SUBJECT: msg.subject,
            DLQ_STREAM: stream,
            DLQ_SEQUENCE: seq,
            DLQ_WORKER: self.name,
            DLQ_TIME: datetime.now(UTC).isoformat(),
        }
        if seq:
            headers["Nats-Msg-Id"] = f"dlq-{stream}-{seq}"
        data = msg.data or b""
        limit = self.ctx.settings.dlq_max_payload
        if len(data) > limit:
            headers[DLQ_ORIGINAL_SIZE] = str(len(data))
            data = data[:limit]
        try:
            await self.ctx.js.publish(topology.dlq_subject(stream, org_id), data, headers=headers)
        except APIError as exc:
            if exc.err_code != STORE_REFUSED:
                raise
            self.stats.dlq_refused += 1
            self.dlq_refused[org_id or ""] += 1
            refused = self.dlq_refused[org_id or ""]
            if refused == 1 or refused % 1000 == 0:  # a flood logs a line per thousand, not per message
                log.warning(
                    "%s: dead letter of %s refused (%s; %d refused for organisation %s): %s",
                    self.name,
                    msg.subject,
                    exc.description,
                    refused,
                    org_id or "-",
                    reason,
                )
            return False
        self.stats.dead_lettered += 1
        if DLQ_ORIGINAL_SIZE in headers:
            self.stats.dlq_truncated += 1
        log.warning("%s: dead-lettered %s seq=%s: %s", self.name, msg.subject, seq or "?", reason)
        return True


def server_reply(msg: Msg) -> bool:
    """Whether ``msg`` is an answer of the NATS server, sent into an ingest subject by a client.

    nats-server does not check a request's reply subject against the client's publish
    permissions, so a device can have the server publish a PubAck, a direct-get response
    (its own, chosen payload) or an API response into another organisation's subjects,
    where the streams capture it (docs/security.md, NATS). Those answers have shapes no
    device message has: the direct-get headers, or JSON that is a PubAck, an API response
    (``type`` ``io.nats.jetstream.api.…``) or a bare API error. Cheap on the hot path:
    a few header lookups and one prefix test before any decode.
    """
    headers = msg.headers
    if headers:
        for name in REPLY_HEADERS:
            if name in headers:
                return True
    data = msg.data
    # nats-server writes its answers compactly with that key first (Go structs: the API
    # response's ``type`` or the error, a PubAck's ``stream``): one prefix test, then a decode.
    if not data or not data.startswith(REPLY_PREFIXES):
        return False
    try:
        doc = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return False
    if not isinstance(doc, dict):
        return False
    kind = doc.get("type")
    if isinstance(kind, str) and kind.startswith(JS_API_TYPE):
        return True
    if doc.keys() == {"error"} and isinstance(doc["error"], dict) and "code" in doc["error"]:
        return True
    return "stream" in doc and "seq" in doc and doc.keys() <= PUBACK_KEYS


class ConsumerWorker(Worker, abc.ABC):
    """A worker fed by one durable pull consumer (see ``core.topology.CONSUMERS``)."""

    stream = ""
    durable = ""
    batch_size = 100
    fetch_timeout = 1.0  # seconds; bounds how long a stop request waits
    max_deliver = 8  # matches the consumer config in core.topology

    def reject_server_reply(self, msg: Msg) -> None:
        """Raise ``InvalidMessage`` (and count it) when ``msg`` is a server reply; see ``server_reply``.

        Every worker consuming subjects that devices publish calls this before decoding.
        """
        if server_reply(msg):
            self.stats.reply_injections += 1
            raise InvalidMessage(REPLY_INJECTION)

    @abc.abstractmethod
    async def handle(self, msg: Msg) -> None:
        """Process one message; raise ``InvalidMessage`` or ``TransientError`` on failure."""

    async def handle_batch(self, msgs: Sequence[Msg]) -> None:
        """Process a fetched batch; the default handles each message in order."""
        for msg in msgs:
            await self.process(msg)

    async def process(self, msg: Msg) -> None:
        """Run ``handle`` and acknowledge according to the outcome."""
        try:
            await self.handle(msg)
        except InvalidMessage as exc:
            self.stats.failed += 1
            await self.dead_letter(msg, exc.reason, self.stream)
            await msg.term()
            return
        except Exception as exc:  # noqa: BLE001 - every failure is logged and retried or dead-lettered
            await self.retry_or_dead_letter(msg, exc)
            return
        await msg.ack()
        self.stats.processed += 1
        self.stats.last_message_at = time.time()

    async def retry_or_dead_letter(self, msg: Msg, exc: BaseException) -> None:
        """``nak`` with backoff, or dead-letter once the delivery budget is spent."""
        self.stats.failed += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        delivered = 1
        with contextlib.suppress(Exception):
            delivered = msg.metadata.num_delivered
        if delivered >= self.max_deliver - 1:
            await self.dead_letter(msg, f"gave up after {delivered} deliveries: {self.stats.last_error}", self.stream)
            await msg.term()
            return
        if isinstance(exc, TransientError):
            log.debug("%s: %s (delivery %d, retried)", self.name, exc, delivered)
        else:
            log.exception("%s: error handling %s (delivery %d)", self.name, msg.subject, delivered, exc_info=exc)
        await msg.nak(delay=NAK_DELAYS[min(delivered - 1, len(NAK_DELAYS) - 1)])
        self.stats.naks += 1

    async def run(self) -> None:
        """Fetch and process batches until ``stopping`` is set."""
        consumer = PullConsumer(self.ctx.nc, self.stream, self.durable, batch=self.batch_size)
        await consumer.start()
        log.info("%s: consuming %s/%s", self.name, self.stream, self.durable)
        try:
            while not self.stopping.is_set():
                if self.ctx.nc.is_closed or self.ctx.nc.is_draining:
                    return
                msgs = await consumer.fetch(self.fetch_timeout)
                if not msgs:
                    await self.idle()
                    continue
                with self.ctx.tracer.start_as_current_span(
                    f"{self.name} process",
                    kind=SpanKind.CONSUMER,
                    attributes={
                        "messaging.system": "nats",
                        "messaging.destination.name": self.stream,
                        "messaging.consumer.group.name": self.durable,
                        "messaging.batch.message_count": len(msgs),
                    },
                ):
                    await self.handle_batch(msgs)
        finally:
            try:
                await consumer.stop()
            except Exception:
                log.debug("%s: unsubscribe failed", self.name, exc_info=True)

    async def idle(self) -> None:
        """Called when a fetch returns nothing; subclasses flush buffers here."""


class WorkerManager:
    """Starts workers as tasks, restarts crashed ones with backoff, stops them all."""

    def __init__(self, workers: Sequence[Worker]) -> None:
        self.workers = list(workers)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping = False

    def start(self) -> None:
        """Launch every worker's supervised loop."""
        for worker in self.workers:
            self._tasks[worker.name] = asyncio.create_task(self._supervise(worker), name=f"worker-{worker.name}")

    async def _supervise(self, worker: Worker) -> None:
        delay = 0.5
        while not self._stopping:
            try:
                await worker.run()
                if self._stopping or worker.stopping.is_set():
                    return
                log.warning("%s: run() returned early; restarting", worker.name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                worker.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("%s crashed; restarting in %.1fs", worker.name, delay)
            worker.stats.restarts += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    def status(self) -> dict[str, bool]:
        """``{worker name: running}``."""
        return {name: not task.done() for name, task in self._tasks.items()}

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per-worker counters."""
        return {w.name: vars(w.stats) for w in self.workers}

    def dlq_refused(self) -> Counter[str]:
        """Dead letters refused since start because the quota was full, by organisation ("" = none)."""
        total: Counter[str] = Counter()
        for worker in self.workers:
            total.update(worker.dlq_refused)
        return total

    async def stop(self, timeout: float = 0.3) -> None:
        """Ask every worker to stop, give them ``timeout`` to finish, then cancel what is left.

        Cancelling is safe: a message being handled is simply not acknowledged and
        JetStream delivers it again (processing is idempotent).
        """
        self._stopping = True
        for worker in self.workers:
            worker.stopping.set()
        tasks = list(self._tasks.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
