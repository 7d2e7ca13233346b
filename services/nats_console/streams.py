"""Streams and consumers as the console shows them, with rates, consumer health and purge.

One ``StreamService`` per process (the ``nats_streams`` service) keeps the in-memory
samples rates are computed from: a rate needs two readings at least a second apart, so
the first view of a page shows "–" and later ones the slope over the last minute.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import msgspec
from nats.aio.client import Client as NATS

from core.errors import Invalid, NotFound, Unavailable
from core.subjects import visibility
from core.topology import STREAM_STORAGE_FIELDS
from fabric.api import ApiError, Rates, request
from fabric.messages import Reader, parse_server_time
from services.audit import Actor, AuditService
from services.nats_console import health

MAX_TREE_ROWS = 1000  # subject rows shown on a stream page
STREAM_CONFIG_FIELDS = (
    "description",
    *STREAM_STORAGE_FIELDS,
    "max_msgs_per_subject",
    "duplicate_window",
    "num_replicas",
    "allow_direct",
    "deny_delete",
    "deny_purge",
    "sealed",
)
CONSUMER_CONFIG_FIELDS = (
    "durable_name",
    "description",
    "deliver_policy",
    "ack_policy",
    "ack_wait",
    "max_deliver",
    "filter_subject",
    "filter_subjects",
    "max_ack_pending",
    "max_waiting",
    "replay_policy",
    "backoff",
)


class StreamRow(msgspec.Struct, frozen=True, kw_only=True):
    """One stream in the list."""

    name: str
    subjects: list[str]
    retention: str
    storage: str
    messages: int
    bytes: int
    consumers: int
    first_seq: int
    last_seq: int
    first_ts: str
    last_ts: str
    rate: float | None  # messages per second over the last minute
    max_bytes: int
    allow_direct: bool
    deny_purge: bool


class SubjectNode(msgspec.Struct, frozen=True):
    """A row of the subject tree: a token at ``depth``, with the count of everything under it."""

    path: str
    token: str
    depth: int
    count: int
    leaf: bool


class ConsumerRow(msgspec.Struct, frozen=True, kw_only=True):
    """One consumer with its state, health and stall flag."""

    stream: str
    name: str
    num_pending: int
    num_ack_pending: int
    num_redelivered: int
    num_waiting: int
    delivered_seq: int
    ack_floor_seq: int
    last_active: str
    ack_rate: float | None
    health: health.HealthScore
    stalled: bool
    paused: bool
    config: dict[str, Any]


class StreamDetail(msgspec.Struct, frozen=True):
    """The stream page: summary row, config, subject tree and consumers."""

    row: StreamRow
    config: dict[str, Any]
    subjects: list[SubjectNode]
    subject_total: int
    subjects_hidden: int
    consumers: list[ConsumerRow]


def api_failure(exc: ApiError, what: str) -> Exception:
    """The domain error (404, 503 or 422) for a JetStream API error about ``what``."""
    if exc.code == 404:
        return NotFound(f"{what} not found")
    if exc.code == 503:
        return Unavailable(f"{what}: {exc.description}")
    return Invalid(f"{what}: {exc.description}")


def _iso(value: Any) -> str:
    text = str(value or "")
    return "" if text.startswith("0001-01-01") else text


def subject_tree(counts: dict[str, int], limit: int = MAX_TREE_ROWS) -> list[SubjectNode]:
    """Subjects as a token tree, each node with the total below it, depth-first and sorted."""
    totals: dict[tuple[str, ...], int] = {}
    leaves: set[tuple[str, ...]] = set()
    for subject, count in counts.items():
        tokens = tuple(subject.split("."))
        leaves.add(tokens)
        for i in range(1, len(tokens) + 1):
            totals[tokens[:i]] = totals.get(tokens[:i], 0) + count
    rows = [
        SubjectNode(".".join(path), path[-1], len(path) - 1, totals[path], path in leaves) for path in sorted(totals)
    ]
    return rows[:limit]


class StreamService:
    """Reads streams and consumers for the console pages; purges (audited)."""

    def __init__(self, nc: NATS, audit: AuditService, prefix: str = "$JS.API") -> None:
        self.nc = nc
        self.audit = audit
        self.prefix = prefix  # the JetStream API prefix ($JS.API unless a domain is configured)
        self.rates = Rates()
        self._delivered: dict[str, tuple[int, float]] = {}  # consumer → (delivered seq, since when)

    async def _api(self, what: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return await request(self.nc, f"{self.prefix}.{what}", body)

    def _row(self, info: dict[str, Any]) -> StreamRow:
        cfg, state = info.get("config", {}), info.get("state", {})
        name = cfg.get("name", "")
        return StreamRow(
            name=name,
            subjects=list(cfg.get("subjects") or []),
            retention=cfg.get("retention", ""),
            storage=cfg.get("storage", ""),
            messages=int(state.get("messages", 0)),
            bytes=int(state.get("bytes", 0)),
            consumers=int(state.get("consumer_count", 0)),
            first_seq=int(state.get("first_seq", 0)),
            last_seq=int(state.get("last_seq", 0)),
            first_ts=_iso(state.get("first_ts")),
            last_ts=_iso(state.get("last_ts")),
            rate=self.rates.add(f"stream:{name}", float(state.get("last_seq", 0))),
            max_bytes=int(cfg.get("max_bytes", -1)),
            allow_direct=bool(cfg.get("allow_direct")),
            deny_purge=bool(cfg.get("deny_purge")),
        )

    async def streams(self) -> list[StreamRow]:
        """Every stream, sorted by name."""
        rows: list[StreamRow] = []
        offset = 0
        while True:
            page = await self._api("STREAM.LIST", {"offset": offset})
            infos = page.get("streams") or []
            rows += [self._row(i) for i in infos]
            offset += len(infos)
            if not infos or offset >= int(page.get("total", 0)):
                break
        return sorted(rows, key=lambda r: r.name)

    async def stream_names(self) -> list[str]:
        """Stream names, sorted."""
        page = await self._api("STREAM.NAMES", {"offset": 0})
        return sorted(page.get("streams") or [])

    async def info(self, name: str, subjects_filter: str = "") -> dict[str, Any]:
        """The raw stream info (``ApiError`` 404 when the stream does not exist)."""
        body = {"subjects_filter": subjects_filter} if subjects_filter else None
        return await self._api(f"STREAM.INFO.{name}", body)

    async def row(self, name: str) -> StreamRow:
        """One stream's list row (``ApiError`` 404 when the stream does not exist)."""
        return self._row(await self.info(name))

    async def subject_counts(self, name: str, subjects_filter: str = ">") -> dict[str, int]:
        """Messages per subject (all pages of the server's answer)."""
        counts: dict[str, int] = {}
        offset = 0
        while True:
            info = await self._api(f"STREAM.INFO.{name}", {"subjects_filter": subjects_filter, "offset": offset})
            page = info.get("state", {}).get("subjects") or {}
            counts.update(page)
            offset += len(page)
            if not page or offset >= int(info.get("total", 0) or 0):
                break
        return counts

    async def stream(self, name: str, org_ids: frozenset[str] | None) -> StreamDetail:
        """Config, state, subject tree (only subjects the caller may see) and consumers."""
        info = await self.info(name)
        counts = await self.subject_counts(name)
        sees = visibility(org_ids)
        visible = {s: c for s, c in counts.items() if sees(s)}
        cfg = info.get("config", {})
        config = {k: cfg[k] for k in STREAM_CONFIG_FIELDS if k in cfg}
        return StreamDetail(
            self._row(info),
            config,
            subject_tree(visible),
            sum(visible.values()),
            len(counts) - len(visible),
            await self.consumers(name),
        )

    def reader(self, row: StreamRow) -> Reader:
        """A message reader for the stream (direct gets when the stream allows them)."""
        return Reader(self.nc, row.name, row.allow_direct, self.prefix)

    # ------------------------------------------------------------ consumers
    def _consumer(self, info: dict[str, Any], now: float) -> ConsumerRow:
        cfg = info.get("config", {})
        stream, name = info.get("stream_name", ""), info.get("name", "")
        key = f"{stream}/{name}"
        delivered, ack_floor = info.get("delivered", {}), info.get("ack_floor", {})
        delivered_seq, ack_seq = int(delivered.get("stream_seq", 0)), int(ack_floor.get("stream_seq", 0))
        pending, ack_pending = int(info.get("num_pending", 0)), int(info.get("num_ack_pending", 0))
        redelivered, waiting = int(info.get("num_redelivered", 0)), int(info.get("num_waiting", 0))
        ack_rate = self.rates.add(f"ack:{key}", float(ack_seq), now)
        self.rates.add(f"dlv:{key}", float(delivered_seq), now)
        self.rates.add(f"red:{key}", float(redelivered), now)
        average, current = ack_rate, self.rates.recent(f"ack:{key}")
        ratio = None if average is None or current is None else (current / average if average > 0 else 0.0)
        dlv, red = self.rates.span(f"dlv:{key}"), self.rates.span(f"red:{key}")
        if dlv and red and dlv[1] > 0:
            redelivery = red[1] / dlv[1]
        else:
            redelivery = redelivered / delivered_seq if delivered_seq else 0.0
        last = parse_server_time(_iso(delivered.get("last_active")))
        idle = (datetime.now(UTC) - last).total_seconds() if last else None
        seen_seq, since = self._delivered.get(key, (-1, now))
        if seen_seq != delivered_seq:
            since = now
        self._delivered[key] = (delivered_seq, since)
        inputs = health.HealthInputs(
            lag=pending + ack_pending,
            ack_pending=ack_pending,
            max_ack_pending=int(cfg.get("max_ack_pending", 0) or 0),
            processing_ratio=ratio,
            redelivery_ratio=min(1.0, max(0.0, redelivery)),
            connection=health.connection_state(waiting, bool(info.get("push_bound")), idle),
        )
        return ConsumerRow(
            stream=stream,
            name=name,
            num_pending=pending,
            num_ack_pending=ack_pending,
            num_redelivered=redelivered,
            num_waiting=waiting,
            delivered_seq=delivered_seq,
            ack_floor_seq=ack_seq,
            last_active=_iso(delivered.get("last_active")),
            ack_rate=ack_rate,
            health=health.score(inputs),
            stalled=health.is_stalled(pending, now - since),
            paused=bool(info.get("paused")),
            config={k: cfg[k] for k in CONSUMER_CONFIG_FIELDS if cfg.get(k) not in (None, "", [])},
        )

    async def consumers(self, stream: str | None = None) -> list[ConsumerRow]:
        """Consumers of one stream, or of every stream."""
        names = [stream] if stream else await self.stream_names()
        now = time.monotonic()
        rows: list[ConsumerRow] = []
        for name in names:
            page = await self._api(f"CONSUMER.LIST.{name}", {"offset": 0})
            rows += [self._consumer(c, now) for c in page.get("consumers") or []]
        return sorted(rows, key=lambda r: (r.stream, r.name))

    async def consumer(self, stream: str, name: str) -> ConsumerRow:
        """One consumer (``ApiError`` 404 when it does not exist)."""
        return self._consumer(await self._api(f"CONSUMER.INFO.{stream}.{name}"), time.monotonic())

    # ------------------------------------------------------------ purge
    async def purge_count(self, stream: str, subject: str) -> int:
        """How many messages a purge of ``subject`` (empty = all) would remove."""
        if not subject:
            return int((await self.info(stream)).get("state", {}).get("messages", 0))
        return sum((await self.subject_counts(stream, subject)).values())

    async def purge(self, actor: Actor, stream: str, subject: str) -> int:
        """Purge ``subject`` (empty = everything), audited; returns the number of messages removed."""
        body = {"filter": subject} if subject else None
        try:
            result = await self._api(f"STREAM.PURGE.{stream}", body)
        except ApiError as exc:
            await self.audit.record(
                actor, "nats.stream.purge", target=stream, outcome="failure", detail=exc.description
            )
            raise
        purged = int(result.get("purged", 0))
        await self.audit.record(
            actor, "nats.stream.purge", target=stream, detail=f"subject={subject or '(all)'} purged={purged}"
        )
        return purged


__all__ = ["ApiError", "api_failure", "ConsumerRow", "StreamDetail", "StreamRow", "StreamService", "subject_tree"]
