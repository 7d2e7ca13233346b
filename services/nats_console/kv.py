"""The key-value browser's reads and (admin) writes, without durable consumers.

Buckets are the ``KV_*`` streams (one ``STREAM.LIST`` request). Key lists and histories
use a short-lived ordered watcher (what ``kv.keys()`` / ``kv.history()`` do) with a
filter the server applies — so ``org1.*`` or ``ent-1.>`` wildcards work — and a cap on
how many keys are read. Writes are compare-and-set against the revision the admin
reviewed, so a value changed in between is never overwritten blindly.

Only ``WRITABLE_BUCKETS`` (the EntityState bucket) can be written here, by anyone: the
registry and every other bucket belong to the services that write them, and a value
there decides which organisation an entity is in. A root EntityState value may not
name another entity or organisation than its key's registry record.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.errors import APIError, BucketNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from core import topology
from core.errors import Conflict, Invalid, NotFound, Unavailable
from core.topics import Topic
from fabric.pubacks import wrong_last_sequence
from services.audit import Actor, AuditService, diff
from services.nats_console.access import KeyAccess
from services.nats_console.values import Diff, ValueView, format_value, json_object, line_diff

MAX_KEYS = 1000  # keys listed per page at most (narrow the filter for more)
MAX_HISTORY = 64  # revisions shown (a bucket keeps at most its history depth anyway)
WATCH_TIMEOUT = 5.0  # seconds to wait for the next key while listing
LIST_TIMEOUT = 5.0
KEY_RE = re.compile(r"^[-/_=.a-zA-Z0-9]{1,1024}$")
BUCKET_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_FILTER_TOKEN = re.compile(r"^[-/_=a-zA-Z0-9]+$")
KV_PREFIX = topology.kv_stream("")  # "KV_"
LIVE_BUCKETS = {topology.BUCKET_STATE: Topic.STATE, topology.BUCKET_REGISTRY: Topic.REGISTRY}  # hub topic per bucket
WRITABLE_BUCKETS = frozenset({topology.BUCKET_STATE})  # every other bucket is read-only in the console
T = TypeVar("T")


class BucketRow(msgspec.Struct, frozen=True, kw_only=True):
    """One bucket in the list."""

    name: str
    description: str
    keys: int  # subjects in the backing stream (deleted keys keep a marker until purged)
    values: int  # stored revisions
    bytes: int
    history: int
    ttl: float | None  # seconds; None = values never expire
    max_bytes: int
    live: bool  # changes can be watched live (the process already follows this bucket)


class KeyRow(msgspec.Struct, frozen=True):
    """One key in a bucket's list."""

    key: str
    revision: int
    modified: str
    operation: str  # PUT, DEL or PURGE


class KeyList(msgspec.Struct, frozen=True, kw_only=True):
    """The keys of a bucket matching a filter."""

    bucket: BucketRow
    filter: str
    keys: list[KeyRow]
    truncated: bool  # MAX_KEYS reached: narrow the filter
    hidden: int  # keys of organisations the caller does not see
    deleted: bool  # deleted keys included


class Revision(msgspec.Struct, frozen=True, kw_only=True):
    """One revision of a key."""

    revision: int
    operation: str
    time: str
    size: int
    value: ValueView


class KeyDetail(msgspec.Struct, frozen=True, kw_only=True):
    """A key's page: its latest revision and its history (newest first)."""

    bucket: BucketRow
    key: str
    org_id: str | None
    latest: Revision | None
    history: list[Revision]

    @property
    def exists(self) -> bool:
        """The key has a value (its latest revision is not a delete marker)."""
        return self.latest is not None and self.latest.operation == "PUT"

    @property
    def revision(self) -> int:
        """The latest revision (0 when the key never existed): the CAS base for writes."""
        return self.latest.revision if self.latest else 0


def check_bucket(name: str) -> str:
    """A bucket name or ``Invalid``."""
    if not BUCKET_RE.match(name):
        raise Invalid(f"invalid bucket name {name!r}: letters, digits, _ and - only")
    return name


def check_key(key: str) -> str:
    """A KV key (letters, digits and ``-/_=.``, not starting or ending with a dot) or ``Invalid``."""
    if not KEY_RE.match(key) or key.startswith(".") or key.endswith(".") or ".." in key:
        raise Invalid(f"invalid key {key!r}: letters, digits and - / _ = . only, no leading, trailing or double dot")
    return key


def check_filter(text: str) -> str:
    """A key filter: tokens separated by dots, each ``*`` or literal, optionally a final ``>``."""
    tokens = text.split(".")
    for i, tok in enumerate(tokens):
        if tok == ">" and i == len(tokens) - 1:
            continue
        if tok != "*" and not _FILTER_TOKEN.match(tok):
            raise Invalid(f"invalid key filter {text!r}: dot-separated tokens, '*' for one token, a final '>' for any")
    return text


def writable(bucket: str) -> bool:
    """Whether the console may write ``bucket`` at all (for any role)."""
    return bucket in WRITABLE_BUCKETS


def read_only_reason(bucket: str) -> str:
    """Why a bucket cannot be written through the console."""
    if bucket == topology.BUCKET_REGISTRY:
        owner = "the registry service (organisations and entities are changed through their API and admin pages)"
    else:
        owner = "the service that owns it"
    return f"bucket {bucket} is read-only in the console: it is written only by {owner}"


def check_state_value(key: str, value: bytes, org_id: str | None) -> None:
    """A root EntityState value must not name another entity or organisation than its key (``Invalid``).

    ``org_id`` is the organisation of the key's registry record (``None``: unregistered).
    Sub-keys (``{entity_id}.{path}``) are merged under their path, so they cannot claim either.
    """
    entity_id, _, path = key.partition(".")
    if path:
        return
    try:
        doc = msgspec.json.decode(value)
    except (msgspec.DecodeError, RecursionError):
        return  # not JSON: shown as text, never read as an entity's state
    if not isinstance(doc, dict):
        return
    named_entity = doc.get("entity_id")
    if named_entity not in (None, "") and named_entity != entity_id:
        raise Invalid(f"the value names entity {named_entity!r} but the key is {entity_id!r}; they must agree")
    named_org = doc.get("org_id")
    if named_org not in (None, "") and named_org != org_id:
        where = f"the registry places {entity_id} in {org_id!r}" if org_id else f"{entity_id} is not registered"
        raise Invalid(
            f"the value names organisation {named_org!r} but {where}; an entity's organisation is its registry record's"
        )


def _time(value: Any) -> str:
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, (int, float)) and value > 0:
        when = datetime.fromtimestamp(value / 1e9 if value > 1e12 else value, UTC)
    else:
        return ""
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _operation(entry: KeyValue.Entry) -> str:
    return str(entry.operation or "PUT")


def audit_changes(before: bytes | None, after: bytes | None) -> dict[str, list[Any]]:
    """What an audited write changed: the JSON fields, or the text (cut) when not JSON objects."""
    old, new = json_object(before), json_object(after)
    if (old is not None or not before) and (new is not None or not after):
        return diff(old, new)
    limit = 2000
    return {
        "value": [(before or b"").decode("utf-8", "replace")[:limit], (after or b"").decode("utf-8", "replace")[:limit]]
    }


class KvService:
    """Reads buckets for the console and writes (audited) the writable ones; holds no state."""

    def __init__(self, nc: NATS, js: JetStreamContext, access: KeyAccess, audit: AuditService) -> None:
        self.nc = nc
        self.js = js
        self.access = access
        self.audit = audit

    async def org_of_key(self, bucket: str, key: str) -> str | None:
        """The organisation owning ``key`` in ``bucket`` (``None``: none known)."""
        return await self.access.org_of_key(bucket, key)

    async def key_filter(self, bucket: str, org_ids: frozenset[str] | None) -> Callable[[str], bool]:
        """Which keys of ``bucket`` a caller seeing ``org_ids`` (``None`` = all) may see."""
        return await self.access.key_filter(bucket, org_ids)

    def state_revision(self, entity_id: str) -> int:
        """The latest EntityState revision of the entity this process has seen (0: none)."""
        return self.access.revision(entity_id)

    async def _api(self, subject: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        nc = self.nc
        try:
            msg = await nc.request(subject, json.dumps(body or {}).encode(), timeout=LIST_TIMEOUT)
        except (NatsTimeout, NoRespondersError):
            raise Unavailable("JetStream did not answer") from None
        data: dict[str, Any] = json.loads(msg.data or b"{}")
        if "error" in data:
            err = data["error"]
            if int(err.get("code", 500)) == 404:
                raise NotFound("bucket not found")
            raise Invalid(str(err.get("description", "JetStream API error")))
        return data

    @staticmethod
    def _row(info: dict[str, Any]) -> BucketRow:
        config, state = info.get("config", {}), info.get("state", {})
        max_age = int(config.get("max_age") or 0)
        return BucketRow(
            name=str(config.get("name", "")).removeprefix(KV_PREFIX),
            description=str(config.get("description") or ""),
            keys=int(state.get("num_subjects") or 0),
            values=int(state.get("messages") or 0),
            bytes=int(state.get("bytes") or 0),
            history=int(config.get("max_msgs_per_subject") or 1),
            ttl=max_age / 1e9 if max_age > 0 else None,
            max_bytes=int(config.get("max_bytes") if config.get("max_bytes") is not None else -1),
            live=str(config.get("name", "")).removeprefix(KV_PREFIX) in LIVE_BUCKETS,
        )

    async def buckets(self) -> list[BucketRow]:
        """Every bucket (every ``KV_*`` stream), by name."""
        rows: list[BucketRow] = []
        offset = 0
        while True:
            page = await self._api("$JS.API.STREAM.LIST", {"offset": offset, "subject": "$KV.>"})
            streams = page.get("streams") or []
            rows += [self._row(s) for s in streams if str(s.get("config", {}).get("name", "")).startswith(KV_PREFIX)]
            offset += len(streams)
            if not streams or offset >= int(page.get("total") or 0):
                break
        return sorted(rows, key=lambda r: r.name)

    async def bucket(self, name: str) -> BucketRow:
        """One bucket's status; ``NotFound`` if there is none."""
        check_bucket(name)
        try:
            return self._row(await self._api(f"$JS.API.STREAM.INFO.{topology.kv_stream(name)}"))
        except NotFound:
            raise NotFound(f"bucket {name} not found") from None

    async def _kv(self, name: str) -> KeyValue:
        try:
            return await self.js.key_value(name)
        except (BucketNotFoundError, NotFoundError):
            raise NotFound(f"bucket {name} not found") from None

    async def keys(
        self, name: str, pattern: str, visible: Callable[[str], bool], include_deleted: bool = False
    ) -> KeyList:
        """Keys matching ``pattern`` (wildcards; a plain word matches keys containing it)."""
        row = await self.bucket(name)
        kv = await self._kv(name)
        wildcard = pattern and ("*" in pattern or ">" in pattern)
        if wildcard:
            check_filter(pattern)
        needle = "" if wildcard else pattern
        rows: list[KeyRow] = []
        hidden = 0
        truncated = False
        async with contextlib.aclosing(self._entries(kv, name, pattern if wildcard else ">", history=False)) as entries:
            async for entry in entries:
                if needle and needle not in entry.key:
                    continue
                if not include_deleted and _operation(entry) != "PUT":
                    continue
                if not visible(entry.key):
                    hidden += 1
                    continue
                if len(rows) >= MAX_KEYS:
                    truncated = True
                    break
                rows.append(KeyRow(entry.key, entry.revision or 0, _time(entry.created), _operation(entry)))
        rows.sort(key=lambda r: r.key)
        return KeyList(
            bucket=row, filter=pattern, keys=rows, truncated=truncated, hidden=hidden, deleted=include_deleted
        )

    async def _has_messages(self, bucket: str, pattern: str) -> bool:
        info = await self._api(
            f"$JS.API.STREAM.INFO.{topology.kv_stream(bucket)}", {"subjects_filter": f"$KV.{bucket}.{pattern}"}
        )
        return bool((info.get("state") or {}).get("subjects"))

    async def _entries(
        self, kv: KeyValue, bucket: str, pattern: str, *, history: bool
    ) -> AsyncGenerator[KeyValue.Entry, None]:
        """Entries matching ``pattern`` (latest per key, or every kept revision) until caught up.

        A short-lived ordered watcher, stopped in ``finally``. The end is the entry with
        nothing pending after it; nats-py's own "caught up" marker can come before any
        entry when delivery races its consumer-info check, so it is trusted only when
        the stream really holds nothing matching.
        """
        watcher = await kv.watch(pattern, include_history=history, meta_only=not history, inactive_threshold=5.0)
        seen = 0
        try:
            while True:
                try:
                    entry = await watcher.updates(timeout=WATCH_TIMEOUT)
                except NatsTimeout:
                    raise Unavailable(f"reading {bucket} timed out") from None
                if entry is None:
                    if seen or not await self._has_messages(bucket, pattern):
                        return
                    continue
                if not isinstance(entry, KeyValue.Entry):  # the stop sentinel
                    return
                seen += 1
                yield entry
                if not entry.delta:
                    return
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()

    async def history(self, kv: KeyValue, bucket: str, key: str) -> list[KeyValue.Entry]:
        """Every kept revision of ``key``, oldest first (empty when it never existed)."""
        entries: list[KeyValue.Entry] = []
        async with contextlib.aclosing(self._entries(kv, bucket, key, history=True)) as stream:
            async for entry in stream:
                entries.append(entry)
                if len(entries) > MAX_HISTORY * 4:
                    entries = entries[-MAX_HISTORY:]
        return entries[-MAX_HISTORY:]

    async def detail(self, name: str, key: str, org_id: str | None) -> tuple[KeyDetail, dict[int, bytes]]:
        """The key's page and the raw value of each kept revision (for diffs)."""
        check_key(key)
        row = await self.bucket(name)
        kv = await self._kv(name)
        entries = await self.history(kv, name, key)
        revisions = [
            Revision(
                revision=e.revision or 0,
                operation=_operation(e),
                time=_time(e.created),
                size=len(e.value or b""),
                value=format_value(e.value),
            )
            for e in reversed(entries)
        ]
        raw = {e.revision or 0: e.value or b"" for e in entries}
        detail = KeyDetail(
            bucket=row, key=key, org_id=org_id, latest=revisions[0] if revisions else None, history=revisions
        )
        return detail, raw

    @staticmethod
    def diff(raw: dict[int, bytes], before: int, after: int) -> Diff:
        """The line diff between two kept revisions; ``Invalid`` if one is not kept."""
        missing = [r for r in (before, after) if r not in raw]
        if missing:
            raise Invalid(f"revision {missing[0]} is not in the kept history")
        return line_diff(raw[before], raw[after], f"revision {before}", f"revision {after}")

    async def write(
        self, actor: Actor, name: str, key: str, org: str | None, value: bytes, expected: int, current: bytes | None
    ) -> int:
        """``put`` for the console, audited with what changed against ``current`` (the reviewed value)."""
        return await self._audited(
            actor,
            "nats.kv.put",
            f"{name}/{key}",
            org,
            lambda: self.put(name, key, value, expected),
            lambda revision: f"revision {expected} -> {revision}",
            audit_changes(current, value),
        )

    async def remove(
        self, actor: Actor, name: str, key: str, org: str | None, expected: int, current: bytes | None
    ) -> None:
        """``delete`` for the console, audited with the value that went."""
        await self._audited(
            actor,
            "nats.kv.delete",
            f"{name}/{key}",
            org,
            lambda: self.delete(name, key, expected),
            lambda _: f"revision {expected} deleted",
            audit_changes(current, None),
        )

    async def _audited(
        self,
        actor: Actor,
        action: str,
        target: str,
        org: str | None,
        change: Callable[[], Awaitable[T]],
        detail: Callable[[T], str],
        changes: dict[str, list[Any]],
    ) -> T:
        """Make ``change`` and audit it with its ``detail`` and ``changes``, or audit the failure and raise it again."""
        try:
            done = await change()
        except Exception as exc:
            await self.audit.record(actor, action, target=target, org_id=org or "", outcome="failure", detail=str(exc))
            raise
        await self.audit.record(actor, action, target=target, org_id=org or "", detail=detail(done), changes=changes)
        return done

    async def put(self, name: str, key: str, value: bytes, expected: int) -> int:
        """Write ``value`` if the key's latest revision is still ``expected`` (0: never written)."""
        check_key(key)
        kv = await self._kv(name)
        try:
            return await asyncio.wait_for(kv.update(key, value, last=expected), LIST_TIMEOUT)
        except KeyWrongLastSequenceError:
            raise Conflict(f"{key} changed since revision {expected}: review the new value and try again") from None

    async def delete(self, name: str, key: str, expected: int) -> None:
        """Delete the key (a delete marker; history is kept) if still at revision ``expected``."""
        check_key(key)
        kv = await self._kv(name)
        try:
            await asyncio.wait_for(kv.delete(key, last=expected), LIST_TIMEOUT)
        except KeyWrongLastSequenceError:
            raise Conflict(f"{key} changed since revision {expected}: review it and try again") from None
        except APIError as exc:
            # nats-py's ``delete`` passes the server's "wrong last sequence" on as a plain API error.
            if wrong_last_sequence(exc.err_code):
                raise Conflict(f"{key} changed since revision {expected}: review it and try again") from None
            raise
