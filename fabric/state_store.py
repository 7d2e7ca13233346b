"""Scope-isolated compare-and-set writes to ``CONSTELLATION_GLOBAL_STATE``.

A writer calls ``merge(entity_id, mutate)``: the current value is read (or taken
from this writer's own last write), ``mutate`` replaces only the writer's scopes in
a shallow copy, and the result is written with ``update(last=revision)``. If any
other writer got in between, the server rejects the update, the value is re-read
and ``mutate`` runs again — so no writer ever drops another writer's scope.

The cache only saves the read when this writer was the last to write; the server's
revision check is what makes it safe.

A deleted or purged key is a normal event: its delete/purge marker is the subject's
last message, so a re-create names the marker's revision (``read`` keeps it; nats-py's
``get`` reports the marker as "not found" but still carries it). A writer whose cached
revision predates the delete pays one conflict and one re-read, then writes a fresh
document — no write ever waits for anything when nothing was deleted.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from core.contracts.common import DecodeError, decode_object, encode, utc_now
from core.contracts.state import new_state
from core.errors import TransientError
from fabric.pubacks import AckedPublisher, PublishError, wrong_last_sequence

log = logging.getLogger(__name__)

Mutate = Callable[[dict[str, Any]], bool]
Job = tuple[str, Mutate, "Callable[[], dict[str, Any]] | None"]
Doc = dict[str, Any]
# The server names the subject's real last sequence in the error ("wrong last sequence: 42").
_LAST_SEQUENCE_RE = re.compile(r"wrong last sequence: (\d+)")


def reported_last_sequence(description: str | None) -> int | None:
    """The last sequence a "wrong last sequence" error reports, or ``None`` if it names none."""
    found = _LAST_SEQUENCE_RE.search(description or "")
    return int(found.group(1)) if found else None


def deep_merge(base: Any, patch: Any) -> Any:
    """Return ``base`` with ``patch`` merged in (dicts recursively, everything else replaced).

    Neither argument is modified.
    """
    if not isinstance(base, dict) or not isinstance(patch, dict):
        return patch
    out = dict(base)
    for key, value in patch.items():
        out[key] = deep_merge(out.get(key), value) if isinstance(value, dict) else value
    return out


class StateStore:
    """CAS merges into the global state bucket on behalf of one writer."""

    def __init__(self, kv: KeyValue, writer: str, cache_size: int = 50_000, retries: int = 20) -> None:
        self.kv = kv
        self.writer = writer
        self.retries = retries
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple[int, Doc | None]] = OrderedDict()
        # KeyValue keeps the bucket's subject prefix private; it is "$KV.<bucket>.".
        self._prefix = kv._pre
        self._publisher: AckedPublisher | None = None
        self.writes = 0
        self.conflicts = 0

    async def read(self, entity_id: str) -> tuple[int, Doc | None]:
        """Current ``(revision, value)``; value ``None`` when missing or deleted.

        The revision of a delete or purge marker is kept: a re-create must name it for
        CAS. ``KeyValue.get`` re-raises the marker's ``KeyDeletedError`` as
        ``KeyNotFoundError`` but keeps the marker in ``entry``; a key that never had a
        message (or whose marker was purged or expired) has no entry and revision 0.
        """
        try:
            entry = await self.kv.get(entity_id)
        except (KeyDeletedError, KeyNotFoundError) as exc:
            marker = exc.entry
            return (marker.revision or 0) if marker is not None else 0, None
        if entry.value is None:
            return entry.revision or 0, None
        try:
            return entry.revision or 0, decode_object(entry.value)
        except DecodeError:
            # A foreign writer stored garbage: start from a fresh document, keep the revision for CAS.
            log.warning("state %s rev %s is not a JSON object; replacing it", entity_id, entry.revision)
            return entry.revision or 0, {}

    async def merge(
        self,
        entity_id: str,
        mutate: Mutate,
        *,
        create: bool = True,
        defaults: Callable[[], Doc] | None = None,
    ) -> int | None:
        """Apply ``mutate`` to the entity's value with CAS; return the new revision.

        ``mutate(doc)`` edits a shallow copy (replace whole scopes, never edit nested
        objects in place) and returns False when nothing changed. With ``create=False``
        a missing entity is left alone (returns ``None``).
        """
        cached: tuple[int, Doc | None] | None = self._cache.get(entity_id)
        reported: int | None = None  # the last sequence the server named in the previous conflict
        for attempt in range(self.retries):
            if cached is None or attempt > 0:
                cached = await self.read(entity_id)
            revision, current = cached
            if current is None:
                if not create:
                    return None
                if reported is not None and reported > revision:
                    # The read saw no marker the server still has (it raced a delete, or a client
                    # library hides markers): take the server's word rather than conflict again.
                    revision = reported
                doc = defaults() if defaults else new_state(entity_id)
            else:
                doc = dict(current)
            if not mutate(doc):
                return revision
            doc["updated_at"] = utc_now()
            try:
                new_rev = await self._write(entity_id, encode(doc), revision)
            except KeyWrongLastSequenceError as exc:
                self.conflicts += 1
                reported = reported_last_sequence(exc.description)
                self._cache.pop(entity_id, None)
                # Random backoff breaks lockstep with a writer that keeps winning.
                await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))
                continue
            except Exception:
                self._cache.pop(entity_id, None)
                raise
            self.writes += 1
            self._remember(entity_id, new_rev, doc)
            return new_rev
        raise TransientError(f"state {entity_id}: {self.retries} CAS conflicts in a row")

    async def merge_many(self, jobs: list[Job]) -> list[int | None | BaseException]:
        """``merge`` for many entities at once, pipelined: one round trip for the batch.

        Entities whose value this writer wrote last are written straight away with
        CAS and their acks awaited together; the rest (first write, conflicts) go
        through ``merge``. Returns each job's revision, or the exception it raised.
        """
        results: list[int | None | BaseException] = [None] * len(jobs)
        inflight: list[tuple[int, str, Doc, asyncio.Future[int]]] = []
        slow: list[int] = []
        now = utc_now()  # one timestamp for the batch (formatting one per entity was a visible cost)
        for idx, (entity_id, mutate, _defaults) in enumerate(jobs):
            cached = self._cache.get(entity_id)
            if cached is None or cached[1] is None:
                slow.append(idx)
                continue
            doc = dict(cached[1])
            if not mutate(doc):
                results[idx] = cached[0]
                continue
            doc["updated_at"] = now
            if self._publisher is None:
                self._publisher = AckedPublisher(self.kv._js._nc)
            fut = await self._publisher.submit(
                f"{self._prefix}{entity_id}",
                encode(doc),
                headers={"Nats-Expected-Last-Subject-Sequence": str(cached[0])},
            )
            inflight.append((idx, entity_id, doc, fut))
        if inflight:
            await asyncio.wait([f for *_, f in inflight])
        for idx, entity_id, doc, fut in inflight:
            exc = fut.exception()
            if exc is None:
                self.writes += 1
                self._remember(entity_id, fut.result(), doc)
                results[idx] = fut.result()
                continue
            self._cache.pop(entity_id, None)
            if isinstance(exc, PublishError) and wrong_last_sequence(exc.err_code):
                self.conflicts += 1
                slow.append(idx)
            else:
                results[idx] = exc
        if slow:
            outcomes = await asyncio.gather(
                *(self.merge(jobs[i][0], jobs[i][1], defaults=jobs[i][2]) for i in slow), return_exceptions=True
            )
            for i, outcome in zip(slow, outcomes, strict=True):
                results[i] = outcome
        return results

    async def _write(self, entity_id: str, data: bytes, revision: int) -> int:
        """Publish ``data`` only if the key's last revision is still ``revision`` (0 = never written).

        This is what ``KeyValue.update``/``create`` do, through one shared reply
        subscription (``AckedPublisher``), which costs about half as much per write.
        """
        if self._publisher is None:
            self._publisher = AckedPublisher(self.kv._js._nc)
        try:
            return await self._publisher.publish(
                f"{self._prefix}{entity_id}", data, headers={"Nats-Expected-Last-Subject-Sequence": str(revision)}
            )
        except PublishError as exc:
            if wrong_last_sequence(exc.err_code):
                raise KeyWrongLastSequenceError(description=exc.description) from None
            raise

    async def delete(self, entity_id: str) -> None:
        """Delete the entity's value (and forget the cached copy)."""
        self._cache.pop(entity_id, None)
        try:
            await self.kv.delete(entity_id)
        except KeyNotFoundError:
            return

    def forget(self, entity_id: str) -> None:
        """Drop the cached copy (the next merge re-reads)."""
        self._cache.pop(entity_id, None)

    def _remember(self, entity_id: str, revision: int, doc: Doc) -> None:
        self._cache[entity_id] = (revision, doc)
        self._cache.move_to_end(entity_id)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
