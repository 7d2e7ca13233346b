"""The dead-letter queue: list, read, replay and discard messages of ``CONSTELLATION_DLQ``.

Workers copy a message they cannot process to ``constellation.dlq.{stream}`` with the
reason, original subject, stream and sequence in ``Overwatch-Dlq-*`` headers (see
``workers.base.dead_letter`` and ``docs/nats.md``). Reading uses direct gets by
sequence (no consumer). Replay publishes the original payload and headers — minus the
dead-letter ones — to the original subject through JetStream, and deletes the
dead-letter copy only once the publish was acknowledged, so a message is never lost
and never replayed twice (a replay is also de-duplicated by ``Nats-Msg-Id``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import msgspec
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import APIError, NotFoundError

from core import topology
from core.subjects import org_of_subject
from services.audit import Actor, AuditService
from services.nats_console.values import ValueView, clean_text, format_value

if TYPE_CHECKING:
    from nats.js import JetStreamContext
    from nats.js.api import RawStreamMsg

PAGE_SIZE = 25
MAX_SCAN = 1000  # messages read per page at most (callers who see only some organisations skip others')
STREAM = topology.STREAM_DLQ
DLQ_PREFIX = topology.dlq_subject("X").removesuffix("X")
REPLAY_ID_PREFIX = "replay-dlq-"  # Nats-Msg-Id of a replay: the stream drops a second one
# Headers the dead-letter copy added (all Overwatch-Dlq-*), and the server's own.
_DROP_PREFIXES = ("overwatch-dlq-", "nats-")


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """One dead-lettered message."""

    seq: int
    time: str
    reason: str
    subject: str  # the original subject
    stream: str  # the original stream
    original_seq: str
    worker: str
    failed_at: str
    org_id: str | None
    size: int
    headers: list[tuple[str, str]]
    value: ValueView
    data: bytes

    @property
    def replay_headers(self) -> dict[str, str]:
        """The original headers: everything but the dead-letter and server headers."""
        return {k: v for k, v in self.headers if not k.lower().startswith(_DROP_PREFIXES)}


class DlqPage(msgspec.Struct, frozen=True, kw_only=True):
    """Dead letters newest first, and where the next (older) page starts."""

    items: list[DeadLetter]
    older_before: int | None  # next page: messages before this sequence
    total: int  # messages in the stream (every organisation)
    first_seq: int
    last_seq: int
    scanned: int
    truncated_scan: bool


class ReplayError(Exception):
    """A dead letter could not be replayed (the reason is the message)."""


class Replayed(msgspec.Struct, frozen=True):
    """A successful replay."""

    dlq_seq: int
    subject: str
    stream: str
    new_seq: int
    duplicate: bool  # the stream had already taken this replay (de-duplicated)
    removed: bool  # the dead-letter copy was deleted


def _time(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _filed_org(dlq_subject: str) -> str | None:
    """The organisation the server filed a dead letter under (``constellation.dlq.{org}.{stream}``).

    Only the server publishes dead letters; for subjects without an organisation token
    (video frames) it files them under the entity's registry organisation.
    """
    tokens = dlq_subject.split(".")
    if len(tokens) == 4 and tokens[:2] == [topology.PREFIX, "dlq"] and topology.TOKEN_RE.match(tokens[2]):
        return tokens[2]
    return None


def dead_letter(msg: RawStreamMsg) -> DeadLetter:
    """A stored DLQ message as the console shows it."""
    # Header values came from devices (the original headers) or from exception text: shown, never trusted.
    headers = {clean_text(str(k)): clean_text(str(v)) for k, v in (msg.headers or {}).items()}
    shown = sorted(
        (k, v) for k, v in headers.items() if not k.startswith(("Nats-Stream", "Nats-Sequence", "Nats-Time"))
    )
    subject = headers.get(topology.DLQ_SUBJECT, "")
    data = msg.data or b""
    return DeadLetter(
        seq=int(msg.seq or 0),
        time=_time(msg.time),
        reason=headers.get(topology.DLQ_REASON, ""),
        subject=subject,
        stream=headers.get(topology.DLQ_STREAM, ""),
        original_seq=headers.get(topology.DLQ_SEQUENCE, ""),
        worker=headers.get(topology.DLQ_WORKER, ""),
        failed_at=headers.get(topology.DLQ_TIME, ""),
        org_id=(org_of_subject(subject) if subject else None) or _filed_org(msg.subject or ""),
        size=len(data),
        headers=shown,
        value=format_value(data),
        data=data,
    )


class DlqService:
    """Reads and acts on the dead-letter stream; replays and discards are audited. Holds no state.

    ``refused`` reports the dead letters the per-organisation quota (``quota`` per
    organisation and stream) refused since start, by organisation ("" = none).
    """

    def __init__(
        self, js: JetStreamContext, audit: AuditService, refused: Callable[[], Mapping[str, int]], quota: int
    ) -> None:
        self.js = js
        self.audit = audit
        self.refused = refused
        self.quota = quota

    async def _at_or_after(self, seq: int) -> DeadLetter | None:
        try:
            msg = await self.js.get_msg(
                STREAM, seq=max(1, seq), subject=topology.SUBJECT_DLQ_ALL, next=True, direct=True
            )
        except NotFoundError:
            return None
        return dead_letter(msg)

    async def get(self, seq: int) -> DeadLetter | None:
        """The dead letter at ``seq`` (``None`` if there is none, e.g. replayed or discarded)."""
        if seq < 1:
            return None
        try:
            msg = await self.js.get_msg(STREAM, seq=seq, direct=True)
        except NotFoundError:
            return None
        return dead_letter(msg)

    async def page(self, before: int | None, visible: Callable[[DeadLetter], bool], size: int = PAGE_SIZE) -> DlqPage:
        """Up to ``size`` visible dead letters just before sequence ``before`` (newest first).

        There is no "previous message" request, so this reads forward through windows
        that grow backwards (``size``, then ×4) until the page is full or the first
        sequence is reached.
        """
        info = await self.js.stream_info(STREAM)
        first, last, total = info.state.first_seq, info.state.last_seq, info.state.messages
        hi = min(before or last + 1, last + 1)
        out: list[DeadLetter] = []
        window, scanned = size, 0
        while hi > first and len(out) < size and scanned < MAX_SCAN and total:
            lo = max(first, hi - window)
            chunk: list[DeadLetter] = []
            seq = lo
            while scanned < MAX_SCAN:
                item = await self._at_or_after(seq)
                if item is None or item.seq >= hi:
                    break
                scanned += 1
                if visible(item):
                    chunk.append(item)
                seq = item.seq + 1
            out = chunk + out
            hi, window = lo, window * 4
        out = out[-size:]
        older = out[0].seq if out and out[0].seq > first else None
        if not out and hi > first:
            older = hi  # scan budget spent without a visible message: let the caller go on
        return DlqPage(
            items=list(reversed(out)),
            older_before=older,
            total=total,
            first_seq=first,
            last_seq=last,
            scanned=scanned,
            truncated_scan=scanned >= MAX_SCAN,
        )

    async def replay(self, item: DeadLetter) -> Replayed:
        """Publish ``item`` to its original subject, then delete the dead-letter copy."""
        subject = item.subject
        if not subject or subject.startswith(DLQ_PREFIX) or any(c in subject for c in "*> \t"):
            raise ReplayError(f"dead letter {item.seq} has no replayable original subject ({subject!r})")
        if any(k == topology.DLQ_ORIGINAL_SIZE for k, _ in item.headers):
            raise ReplayError(f"dead letter {item.seq} holds only the first {item.size} bytes of its payload")
        headers = item.replay_headers
        headers["Nats-Msg-Id"] = f"{REPLAY_ID_PREFIX}{item.seq}"
        try:
            ack = await self.js.publish(subject, item.data, headers=headers, timeout=5.0)
        except NoRespondersError:
            raise ReplayError(f"no stream takes {subject} any more; the message stays in the queue") from None
        except NatsTimeout:
            raise ReplayError(f"publishing to {subject} timed out; the message stays in the queue") from None
        except APIError as exc:
            raise ReplayError(f"the stream refused the replay: {exc.description}") from None
        removed = await self.discard(item.seq)
        return Replayed(item.seq, subject, ack.stream, ack.seq, bool(ack.duplicate), removed)

    async def discard(self, seq: int) -> bool:
        """Delete the dead letter at ``seq``; ``False`` if it was already gone."""
        try:
            return bool(await self.js.delete_msg(STREAM, seq))
        except NotFoundError:
            return False
        except APIError as exc:
            if exc.code == 404 or "no message found" in str(exc.description or "").lower():
                return False
            raise

    async def replay_all(self, batch: list[tuple[DeadLetter, Actor]]) -> tuple[int, int]:
        """Replay each dead letter as its actor, one audit entry each; ``(replayed, failed)``."""
        replayed = failed = 0
        for item, actor in batch:
            target = f"{item.seq}:{item.subject}"
            try:
                done = await self.replay(item)
            except ReplayError as exc:
                failed += 1
                await self.audit.record(
                    actor,
                    "nats.dlq.replay",
                    target=target,
                    org_id=item.org_id or "",
                    outcome="failure",
                    detail=str(exc),
                )
                continue
            replayed += 1
            await self.audit.record(
                actor,
                "nats.dlq.replay",
                target=target,
                org_id=item.org_id or "",
                detail=f"republished as {done.stream} seq {done.new_seq}"
                + (" (duplicate)" if done.duplicate else "")
                + ("" if done.removed else "; the dead letter was already gone"),
            )
        return replayed, failed

    async def discard_all(self, batch: list[tuple[DeadLetter, Actor]]) -> int:
        """Delete each dead letter for good as its actor, one audit entry each; how many were still there."""
        discarded = 0
        for item, actor in batch:
            removed = await self.discard(item.seq)
            discarded += int(removed)
            await self.audit.record(
                actor,
                "nats.dlq.discard",
                target=f"{item.seq}:{item.subject}",
                org_id=item.org_id or "",
                detail=f"reason was: {item.reason}" if removed else "already gone",
            )
        return discarded
