"""The key-value browser pages, their live stream, and the admin's put and delete.

``/nats/kv`` lists buckets; ``/nats/kv/{bucket}?filter=`` a bucket's keys;
``/nats/kv/{bucket}/key?key=&a=&b=`` a key's value, history and the diff of two
revisions; ``/events/nats-kv`` follows a bucket or key through the process's own KV
watchers (the hub), never one watcher per browser. Put and delete are for admins of the
key's organisation, show what will change and need a second, confirming submit, write
compare-and-set against the reviewed revision, and are audited with the JSON diff.
Only the EntityState bucket can be written here: the registry and every other bucket
are read-only for every role (403, controls hidden), and a state value that names
another entity or organisation than its key's registry record is refused (422).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import PathParameter, QueryParameter
from litestar.response import Redirect, ServerSentEvent, Template

from core import topology
from core.errors import Invalid, NotFound
from core.topics import Topic
from services.audit import Actor
from services.hub import Update
from services.nats_console.access import entity_of_key
from services.nats_console.kv import (
    LIVE_BUCKETS,
    KeyDetail,
    KvService,
    check_bucket,
    check_key,
    check_state_value,
    read_only_reason,
    writable,
)
from services.nats_console.values import Diff, line_diff
from web.auth.guards import authorize, deny, origin_of, principal_of, requires
from web.sse.live import LiveStreams, Messages

Req = Request[Any, Any, Any]
BucketPath = Annotated[str, PathParameter(pattern=r"^[A-Za-z0-9_-]{1,128}$")]
BucketQuery = Annotated[str, QueryParameter(pattern=r"^[A-Za-z0-9_-]{1,128}$")]
KeyQuery = Annotated[str, QueryParameter(min_length=1, max_length=1024)]
OptKeyQuery = Annotated[str, QueryParameter(max_length=1024)]
FilterQuery = Annotated[str, QueryParameter(name="filter", max_length=255)]
RevQuery = Annotated[int, QueryParameter(ge=0, le=2**63 - 1)]
FlagQuery = Annotated[str, QueryParameter(pattern="^(|0|1|on)$")]
MAX_VALUE = 900 * 1024  # bytes an admin may write through the form (requests are capped at 1 MiB)
RECENT_CHANGES = 50  # rows of the bucket page's live change list


class Change(msgspec.Struct, frozen=True):
    """One row of a bucket's live change list."""

    key: str
    time: str
    revision: int


def _ctx(**values: Any) -> dict[str, Any]:
    return {"active": "nats", "tab": "kv", **values}


def _stream_url(bucket: str, key: str = "", a: int = 0, b: int = 0) -> str:
    params: dict[str, str | int] = {"bucket": bucket}
    if key:
        params["key"] = key
    if a and b:
        params |= {"a": a, "b": b}
    return "/events/nats-kv?" + urlencode(params)


async def _visible_key(request: Req, kv: KvService, bucket: str, key: str) -> str | None:
    """The key's organisation, or ``NotFound`` when the caller may not see the key."""
    org = await kv.org_of_key(bucket, key)
    principal = principal_of(request)
    if principal.org_ids is not None and (org is None or not principal.sees(org)):
        raise NotFound(f"key {key} not found in bucket {bucket}")
    return org


async def _writable(request: Req, bucket: str) -> None:
    """403 (audited) for every role when the console may not write ``bucket``."""
    check_bucket(bucket)
    if not writable(bucket):
        await deny(request, principal_of(request), read_only_reason(bucket))


async def _admin_of_key(request: Req, kv: KvService, bucket: str, key: str) -> tuple[Actor, str | None]:
    """Admin in the key's organisation (every organisation for keys that have none), as an Actor.

    The bucket must be writable at all first: no role writes the registry or a foreign bucket here.
    """
    await _writable(request, bucket)
    org = await kv.org_of_key(bucket, key)
    if org is not None:
        return await authorize(request, org, "admin"), org
    principal = principal_of(request)
    if not principal.is_global_admin:
        await deny(request, principal, f"key {key} belongs to no organisation: needs admin over every organisation")
    return Actor(principal, origin_of(request)), None


async def _key_context(request: Req, kv: KvService, bucket: str, key: str, a: int = 0, b: int = 0) -> dict[str, Any]:
    """Everything the key page and its live regions show."""
    org = await _visible_key(request, kv, bucket, key)
    detail, raw = await kv.detail(bucket, key, org)
    if not detail.history:
        raise NotFound(f"key {key} not found in bucket {bucket}")
    changes: Diff | None = None
    if a and b:
        changes = KvService.diff(raw, a, b)
    elif len(detail.history) >= 2:  # by default: what the latest write changed
        a, b = detail.history[1].revision, detail.history[0].revision
        changes = KvService.diff(raw, a, b)
    principal = principal_of(request)
    can_write = writable(bucket) and (principal.can_in("admin", org) if org is not None else principal.is_global_admin)
    return {
        "d": detail,
        "diff": changes,
        "a": a,
        "b": b,
        "can_write": can_write,
        "read_only": "" if writable(bucket) else read_only_reason(bucket),
    }


def _normalise(text: str) -> bytes:
    """The bytes to store: JSON compacted (as the workers write it), other text as typed."""
    text = text.replace("\r\n", "\n")
    try:
        return msgspec.json.encode(msgspec.json.decode(text))
    except msgspec.DecodeError:
        return text.encode("utf-8")


async def _form(request: Req) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _revision(form: dict[str, str]) -> int:
    raw = form.get("revision", "0") or "0"
    if not raw.isdigit():
        raise Invalid(f"invalid revision {raw!r}")
    return int(raw)


class KvController(Controller):
    """``/nats/kv``: buckets, keys, a key's value/history/diff, live watch, admin put/delete."""

    include_in_schema = False
    guards = [requires("read")]

    @get("/nats/kv")
    async def buckets(self, nats_kv: NamedDependency[KvService]) -> Template:
        """Every bucket: keys, values, bytes, history depth and TTL."""
        rows = await nats_kv.buckets()
        return Template("pages/nats-kv.html", context=_ctx(buckets=rows))

    @get("/nats/kv/{bucket:str}")
    async def keys(
        self,
        request: Req,
        bucket: BucketPath,
        nats_kv: NamedDependency[KvService],
        filter: FilterQuery = "",
        deleted: FlagQuery = "",
    ) -> Template:
        """A bucket's keys matching ``filter`` (``org1.*``, ``ent-1.>`` or a plain substring)."""
        visible = await nats_kv.key_filter(bucket, principal_of(request).org_ids)
        listing = await nats_kv.keys(bucket, filter.strip(), visible, include_deleted=deleted in ("1", "on"))
        stream = _stream_url(bucket) if listing.bucket.live else ""
        return Template(
            "pages/nats-kv-bucket.html",
            context=_ctx(
                k=listing,
                changes=[],
                stream=stream,
                can_write=writable(bucket) and principal_of(request).can("admin"),
                read_only="" if writable(bucket) else read_only_reason(bucket),
            ),
        )

    @get("/nats/kv/{bucket:str}/key")
    async def key(
        self,
        request: Req,
        bucket: BucketPath,
        nats_kv: NamedDependency[KvService],
        key: KeyQuery,
        a: RevQuery = 0,
        b: RevQuery = 0,
    ) -> Template:
        """The key's latest value, its kept revisions, and the diff of two (``a`` → ``b``)."""
        check_key(key)
        ctx = await _key_context(request, nats_kv, bucket, key, a, b)
        live = bucket in LIVE_BUCKETS
        return Template(
            "pages/nats-kv-key.html",
            context=_ctx(**ctx, stream=_stream_url(bucket, key, ctx["a"], ctx["b"]) if live else ""),
        )

    @get("/events/nats-kv")
    async def watch(
        self,
        request: Req,
        nats_kv: NamedDependency[KvService],
        live: NamedDependency[LiveStreams],
        bucket: BucketQuery,
        key: OptKeyQuery = "",
        a: RevQuery = 0,
        b: RevQuery = 0,
    ) -> ServerSentEvent:
        """Live changes: a key's value and history, or the bucket's recent changes."""
        topic = LIVE_BUCKETS.get(bucket)
        if topic is None:
            raise Invalid(f"bucket {bucket} cannot be watched live (only {', '.join(sorted(LIVE_BUCKETS))})")
        if key:
            check_key(key)
            await _visible_key(request, nats_kv, bucket, key)
            return self._key_stream(request, nats_kv, live, topic, bucket, key, a, b)
        return self._bucket_stream(request, nats_kv, live, topic, bucket)

    @staticmethod
    def _key_stream(
        request: Req,
        kv: KvService,
        live: LiveStreams,
        topic: str,
        bucket: str,
        key: str,
        a: int,
        b: int,
    ) -> ServerSentEvent:
        async def resync() -> Messages:
            ctx = await _key_context(request, kv, bucket, key, a, b)
            return [live.event(request, "nats-kv-value", ctx), live.event(request, "nats-kv-history", ctx)]

        async def render(batch: Sequence[Update]) -> Messages:
            if topic == Topic.REGISTRY and not any(u.key == key for u in batch):
                return []
            return await resync()

        # State updates are keyed by entity: a sub-key's page follows its entity's updates.
        keys = {entity_of_key(bucket, key) or key} if topic == Topic.STATE else None
        return live.page_stream(request, {topic}, resync, render, max_fps=2.0, keys=keys)

    @staticmethod
    def _bucket_stream(request: Req, kv: KvService, live: LiveStreams, topic: str, bucket: str) -> ServerSentEvent:
        recent: deque[Change] = deque(maxlen=RECENT_CHANGES)
        principal = principal_of(request)

        async def resync() -> Messages:
            return [live.event(request, "nats-kv-changes", {"changes": list(recent), "bucket": bucket})]

        async def render(batch: Sequence[Update]) -> Messages:
            now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            for update in batch:
                if principal.org_ids is not None and topic == Topic.REGISTRY:
                    org = await kv.org_of_key(bucket, update.key)
                    if org is None or not principal.sees(org):
                        continue  # (state updates were filtered by organisation when offered)
                revision = kv.state_revision(update.key) if topic == Topic.STATE else 0
                recent.appendleft(Change(update.key, now, revision))
            return await resync()

        return live.page_stream(request, {topic}, resync, render, max_fps=2.0)

    @get("/nats/kv/{bucket:str}/edit", guards=[requires("admin")])
    async def edit(
        self, request: Req, bucket: BucketPath, nats_kv: NamedDependency[KvService], key: OptKeyQuery = ""
    ) -> Template:
        """The put form (admins): the current value to edit, or an empty one for a new key."""
        await _writable(request, bucket)
        detail: KeyDetail | None = None
        if key:
            check_key(key)
            await _admin_of_key(request, nats_kv, bucket, key)
            detail, _raw = await nats_kv.detail(bucket, key, None)
        else:
            await nats_kv.bucket(bucket)
        value = detail.latest.value.body if detail and detail.exists and detail.latest else ""
        return Template(
            "pages/nats-kv-edit.html",
            context=_ctx(bucket=bucket, key=key, value=value, revision=detail.revision if detail else 0),
        )

    @post("/nats/kv/{bucket:str}/put", guards=[requires("admin")])
    async def put(self, request: Req, bucket: BucketPath, nats_kv: NamedDependency[KvService]) -> Template | Redirect:
        """First submit: review the diff. Second (``confirm=yes``): write CAS and audit."""
        return await _review_or_apply(request, nats_kv, bucket, "put")

    @post("/nats/kv/{bucket:str}/delete", guards=[requires("admin")])
    async def delete(
        self, request: Req, bucket: BucketPath, nats_kv: NamedDependency[KvService]
    ) -> Template | Redirect:
        """First submit: review what goes. Second (``confirm=yes``): delete CAS and audit."""
        return await _review_or_apply(request, nats_kv, bucket, "delete")


async def _review_or_apply(request: Req, kv: KvService, bucket: str, action: str) -> Template | Redirect:
    """An admin's ``put`` or ``delete`` of the form's key: the first submit shows the change for review, the second
    (``confirm=yes``) makes it, compare-and-set against the reviewed revision, audited."""
    form = await _form(request)
    key = check_key(form.get("key", "").strip())
    expected = _revision(form)
    actor, org = await _admin_of_key(request, kv, bucket, key)
    value = _new_value(form, bucket, key, org) if action == "put" else None
    detail, raw = await kv.detail(bucket, key, org)
    if value is None and not detail.exists:
        raise NotFound(f"key {key} not found in bucket {bucket}")
    current = raw.get(detail.revision) if detail.exists else None
    if form.get("confirm") != "yes":
        before = f"revision {detail.revision}" if detail.exists else "(none)"
        after = "(deleted)" if value is None else "new value"
        return Template(
            "pages/nats-kv-confirm.html",
            context=_ctx(
                action=action,
                bucket=bucket,
                key=key,
                value=(value or b"").decode("utf-8", "replace"),
                revision=expected,
                stale=expected != detail.revision,
                diff=line_diff(current, value or b"", before, after),
                d=detail,
            ),
        )
    if value is None:
        await kv.remove(actor, bucket, key, org, expected, current)
    else:
        await kv.write(actor, bucket, key, org, value, expected, current)
    return Redirect(f"/nats/kv/{bucket}/key?{_query(key)}", status_code=303)


def _new_value(form: dict[str, str], bucket: str, key: str, org: str | None) -> bytes:
    """The form's value as it would be stored, refused when too large or (EntityState) naming another entity."""
    value = _normalise(form.get("value", ""))
    if len(value) > MAX_VALUE:
        raise Invalid(f"value of {len(value)} bytes exceeds {MAX_VALUE}")
    if bucket == topology.BUCKET_STATE:
        check_state_value(key, value, org)
    return value


def _query(key: str) -> str:
    return urlencode({"key": key})
