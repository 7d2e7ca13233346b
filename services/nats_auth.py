"""Authorization of the embedded nats-server: the server's own user and one NKey user per API key.

The embedded server never accepts anonymous clients. The server process connects as
user ``overwatch`` with a password derived from the instance secret (command-line
tools on the same box derive the same one). Every API key created with NATS
credentials becomes an NKey user of one of two kinds:

* a **device** (``device_permissions``), confined to its organisation: publish its
  telemetry, events, acks, announcements, its entities' video frames and their KV keys;
  subscribe to its organisation's commands and to its own reply inbox;
* a **reader** (``reader_permissions``), an integrator of the downstream PRD: read
  EntityState, subscribe to events, entities and telemetry — never publish data. A
  *fabric* reader (no organisation) reads everything and uses JetStream consumers; an
  *organisation* reader only its organisation's subjects and its entities' keys, by core
  subscription and direct get, no consumers (see ``docs/integrators.md`` for what each
  can do and why, ``docs/security.md`` for the reply-subject problem behind it).

The block is re-rendered when keys or entities change (or a key expires) and the
child reloads it (SIGHUP). Rendering is per record: a key or entity that cannot be
rendered (an id that is not a subject token, a malformed public key) is left out
with a logged reason, never the whole block. A render or reload that fails is an
error state: ``/health/ready`` answers 503 with the reason until the next success,
and the manager keeps retrying.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import re
import time
from collections import Counter
from typing import Any

import msgspec
import nkeys
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from core import topology
from core.topics import Topic
from db import apikeys as keys_db
from db import registry as registry_db
from db.database import Database
from fabric.server import EmbeddedNats
from services.hub import Hub, Update

log = logging.getLogger("overwatch.nats.auth")

INTERNAL_USER = "overwatch"
STATE_PREFIX = f"$KV.{topology.BUCKET_STATE}"
STATE_STREAM = topology.kv_stream(topology.BUCKET_STATE)
NKEY_USER_RE = re.compile(r"^U[A-Z2-7]{55}$")  # a user's public NKey (base32, 56 characters)
POLL_INTERVAL = 0.5  # seconds: how soon a key revoked by another process (the CLI) is noticed
MIN_RELOAD_GAP = 0.2  # seconds between reloads: coalesces bursts of registry changes into one
RETRY_INTERVAL = 2.0  # seconds between retries while in the error state


def internal_password(secret: str) -> str:
    """The embedded server's password for the server's own connection (and local tools)."""
    return hmac.new(secret.encode(), b"nats-internal", hashlib.sha256).hexdigest()


def inbox_prefix(key_id: str) -> str:
    """The reply-inbox prefix a key's NATS client must use (``inbox_prefix`` in nats-py)."""
    return f"_INBOX.{key_id.replace('-', '')}"


def device_permissions(org_id: str, entity_ids: list[str], key_id: str) -> dict[str, dict[str, list[str]]]:
    """Subjects an organisation's device credentials may publish to and subscribe on.

    No ``$JS.API.STREAM.INFO``: with a ``subjects_filter`` it lists every key of the
    state bucket, i.e. every organisation's entity ids. Devices bind the bucket
    without it (``state_bucket``) and read their own keys with direct gets.
    """
    org = topology.token(org_id, "org_id")
    publish = [
        f"{topology.PREFIX}.telemetry.{org}.*",
        f"{topology.PREFIX}.events.*.{org}.*",
        f"{topology.PREFIX}.commands.{org}.*.ack",
        f"{topology.PREFIX}.entities.{org}.created",
        f"{topology.PREFIX}.entities.{org}.status",
        "$JS.API.INFO",
    ]
    for entity in entity_ids:
        if not topology.TOKEN_RE.match(entity):
            continue
        publish += [
            topology.video_subject(entity),
            f"{STATE_PREFIX}.{entity}",
            f"{STATE_PREFIX}.{entity}.>",
            f"$JS.API.DIRECT.GET.{STATE_STREAM}.{STATE_PREFIX}.{entity}",
            f"$JS.API.DIRECT.GET.{STATE_STREAM}.{STATE_PREFIX}.{entity}.>",
        ]
    subscribe = [topology.command_wildcard(org), f"{inbox_prefix(key_id)}.>"]
    return {"publish": {"allow": publish}, "subscribe": {"allow": subscribe}}


READABLE_STREAMS = (topology.STREAM_EVENTS, topology.STREAM_ENTITIES, topology.STREAM_TELEMETRY)
# Consumers readers may never steer, pull from, ack for or delete: the workers' own.
SERVER_CONSUMERS = tuple(c.config.durable_name or "" for c in topology.CONSUMERS)
# Shared durables for integrators: fabric readers pull from and ack them, nobody but the server changes them.
SHARED_CONSUMERS = tuple(c.config.durable_name or "" for c in topology.INTEGRATOR_CONSUMERS)
API = "$JS.API"


def _consumer_guard(names: tuple[str, ...], pull: bool) -> list[str]:
    """Deny rules: create/update (every API form that names the consumer), delete, and with ``pull`` fetch and ack."""
    deny: list[str] = []
    for name in names:
        deny += [
            f"{API}.CONSUMER.CREATE.*.{name}",
            f"{API}.CONSUMER.CREATE.*.{name}.>",
            f"{API}.CONSUMER.DURABLE.CREATE.*.{name}",
            f"{API}.CONSUMER.DELETE.*.{name}",
        ]
        if pull:
            deny += [f"{API}.CONSUMER.MSG.NEXT.*.{name}", f"$JS.ACK.*.{name}.>"]
    return deny


def reader_permissions(
    org_id: str | None, entity_ids: list[str], key_id: str, own_consumers: tuple[str, ...] = ()
) -> dict[str, dict[str, list[str]]]:
    """Subjects a reader may publish to (JetStream API requests and acks only) and subscribe on.

    A fabric reader (``org_id=None``) may bind the state bucket and the three readable
    streams (``STREAM.INFO``), get, list, watch and read the history of every key, and
    create, use and delete its own pull or push consumers on those streams, including
    ``detection-processor``. Consumers are created with their name in the subject, so the
    workers' consumers and ``detection-processor`` can be denied by name; the old
    ``CONSUMER.CREATE.{stream}`` form (name in the body, which can update any consumer)
    is allowed on the state bucket only, whose consumers are all short-lived watchers
    with random names (nats-py's ``kv.watch`` needs it).

    An organisation reader gets no JetStream consumers at all (none created, pulled from,
    acked or even looked up): a push consumer's deliver subject and a pull request's reply
    subject are where the *server* publishes, unchecked against the reader's permissions, so
    either would let it copy messages into another organisation's subjects. It gets core
    subscriptions to its organisation's subjects and to its entities' state keys
    (``$KV.CONSTELLATION_GLOBAL_STATE.<entity>``: every change is a message there), and
    direct gets of those keys for current values. No ``STREAM.INFO`` (a subjects filter
    lists every key and subject).
    """
    inbox = f"{inbox_prefix(key_id)}.>"
    # ``own_consumers``: this node's projection consumers (``ow-{node}-…``), as much the server's as the workers'.
    deny = _consumer_guard((*SERVER_CONSUMERS, *own_consumers), pull=True) + _consumer_guard(
        SHARED_CONSUMERS, pull=False
    )
    # Listing consumers would hand out the random names of other clients' (and the server's) watchers.
    deny += [f"{API}.CONSUMER.NAMES.>", f"{API}.CONSUMER.LIST.>"]
    publish = [f"{API}.INFO", f"{API}.STREAM.NAMES"]
    if org_id is None:
        for stream in (*READABLE_STREAMS, STATE_STREAM):
            publish += [
                f"{API}.STREAM.INFO.{stream}",
                f"{API}.CONSUMER.CREATE.{stream}.>",
                f"{API}.CONSUMER.DURABLE.CREATE.{stream}.*",
                f"{API}.CONSUMER.INFO.{stream}.*",
                f"{API}.CONSUMER.DELETE.{stream}.*",
                f"{API}.CONSUMER.MSG.NEXT.{stream}.*",
                f"$JS.ACK.{stream}.>",
                f"$JS.FC.{stream}.>",
            ]
        publish += [
            f"{API}.CONSUMER.CREATE.{STATE_STREAM}",
            f"{API}.DIRECT.GET.{STATE_STREAM}",
            f"{API}.DIRECT.GET.{STATE_STREAM}.>",
            f"{API}.STREAM.MSG.GET.{STATE_STREAM}",
        ]
        subscribe = [topology.SUBJECT_EVENTS_ALL, topology.SUBJECT_ENTITIES_ALL, topology.SUBJECT_TELEMETRY_ALL, inbox]
        return {"publish": {"allow": publish, "deny": deny}, "subscribe": {"allow": subscribe}}
    org = topology.token(org_id, "org_id")
    # No consumer API at all: a consumer (push deliver subject, pull reply subject) makes the server
    # publish copies of messages wherever the client says, and nats-server does not check those
    # subjects against publish permissions — an organisation reader could pour its organisation's
    # messages into another organisation's ingest subjects. Live data comes by core subscription.
    for entity in entity_ids:
        if not topology.TOKEN_RE.match(entity):
            continue
        # The reply of a direct get can be aimed anywhere too; the ingest workers dead-letter it
        # (its headers give it away: ``workers.base.server_reply``).
        publish += [
            f"{API}.DIRECT.GET.{STATE_STREAM}.{STATE_PREFIX}.{entity}",
            f"{API}.DIRECT.GET.{STATE_STREAM}.{STATE_PREFIX}.{entity}.>",
        ]
    subscribe = [
        f"{topology.PREFIX}.events.*.{org}.*",
        f"{topology.PREFIX}.entities.{org}.*",
        f"{topology.PREFIX}.telemetry.{org}.*",
        inbox,
    ]
    # Live KV changes of its entities: every put and delete is a message on the key's subject.
    for entity in entity_ids:
        if topology.TOKEN_RE.match(entity):
            subscribe += [f"{STATE_PREFIX}.{entity}", f"{STATE_PREFIX}.{entity}.>"]
    deny += [f"{API}.CONSUMER.>", "$JS.ACK.>", "$JS.FC.>"]
    return {"publish": {"allow": publish, "deny": deny}, "subscribe": {"allow": subscribe}}


def state_bucket(js: JetStreamContext) -> KeyValue:
    """The EntityState bucket bound without ``STREAM.INFO`` (which device credentials lack).

    ``js.key_value()`` asks the stream for its configuration first; the bucket's
    layout is fixed by ``core/topology.py`` (direct gets allowed), so it is bound directly.
    """
    return KeyValue(
        name=topology.BUCKET_STATE,
        stream=STATE_STREAM,
        pre=f"{STATE_PREFIX}.",
        js=js,
        direct=True,
    )


class AuthBlock(msgspec.Struct, kw_only=True):
    """A rendered ``authorization`` block and what was left out of it."""

    text: str
    users: int
    skipped: list[str]
    next_expiry: str | None = None  # earliest future ``expires_at`` among rendered keys


def valid_user_nkey(pubkey: str) -> bool:
    """A user's public NKey with a correct checksum (nats-server refuses a whole block otherwise)."""
    if not NKEY_USER_RE.match(pubkey):
        return False
    raw = base64.b32decode(pubkey)
    checksum: bytes = nkeys.crc16_checksum(raw[:-2])
    return raw[0] == nkeys.PREFIX_BYTE_USER and checksum == raw[-2:]


def _key_problem(org_id: str | None, pubkey: str, key_id: str, kind: str = "device") -> str:
    if kind not in ("device", "reader"):
        return f"unknown NATS credential kind {kind!r}"
    if (kind == "device" or org_id is not None) and (not org_id or not topology.TOKEN_RE.match(org_id)):
        return f"organisation id {org_id!r} is not a subject token"
    if not valid_user_nkey(pubkey):
        return "its NATS public key is not a user NKey"
    if not topology.TOKEN_RE.match(key_id.replace("-", "")):
        return "its id cannot form a reply-inbox prefix"
    return ""


async def build_authorization(db: Database, secret: str, node_id: str = "") -> AuthBlock:
    """Render the ``authorization`` block; records that cannot be rendered are skipped with a reason.

    ``secret`` is the instance secret the server's own user's password derives from.
    """
    users: list[dict[str, Any]] = [{"user": INTERNAL_USER, "password": internal_password(secret)}]
    skipped: list[str] = []
    by_org: dict[str, list[str]] = {}
    now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    next_expiry: str | None = None
    rows = await keys_db.list_keys(db, include_revoked=True)
    holders = Counter(k.nats_pubkey for k in rows if k.nats_pubkey)
    for key in rows:
        if not key.nats_pubkey or key.revoked_at:
            continue
        if key.expires_at and key.expires_at < now:
            continue
        problem = _key_problem(key.org_id, key.nats_pubkey, key.key_id, key.nats_kind)
        if not problem and holders[key.nats_pubkey] > 1:
            # Never issued so. Rendering either row would let a revoked twin live on (and two
            # users with one NKey fail the whole block), so neither is.
            problem = "its NATS public key belongs to another key too (revoked or not)"
        if problem:
            skipped.append(f"api key {key.name!r} ({key.key_id}): {problem}")
            continue
        org = key.org_id or ""
        if org and org not in by_org:
            ids = [r.entity_id for r in await registry_db.list_entities(db, org_id=org, limit=1_000_000)]
            bad = [e for e in ids if not topology.TOKEN_RE.match(e)]
            skipped += [f"entity {e!r} of organisation {org}: id is not a subject token" for e in bad]
            by_org[org] = [e for e in ids if topology.TOKEN_RE.match(e)]
        if key.nats_kind == "reader":
            # This node's projection consumers are as much the server's as the workers' durables.
            own = tuple(topology.projection_consumer(node_id, p) for p in topology.PROJECTIONS) if node_id else ()
            permissions = reader_permissions(key.org_id, by_org.get(org, []), key.key_id, own)
        else:
            permissions = device_permissions(org, by_org[org], key.key_id)
        users.append({"nkey": key.nats_pubkey, "permissions": permissions})
        if key.expires_at and (next_expiry is None or key.expires_at < next_expiry):
            next_expiry = key.expires_at
    # JSON is valid nats-server configuration syntax.
    text = "authorization " + json.dumps({"users": users}, indent=1)
    return AuthBlock(text=text, users=len(users), skipped=skipped, next_expiry=next_expiry)


async def render_authorization(db: Database, secret: str, node_id: str = "") -> str:
    """The ``authorization`` block of the embedded server's configuration."""
    return (await build_authorization(db, secret, node_id)).text


class NatsAuthManager:
    """Keeps the embedded server's users in step with API keys and the registry.

    ``error`` is empty while the server runs the latest rendered block; otherwise it
    says why not (``/health/ready`` shows it as a failed ``nats_auth`` check).
    """

    def __init__(self, db: Database, secret: str, hub: Hub, server: EmbeddedNats, node_id: str = "") -> None:
        self.db = db
        self.secret = secret  # the server's own user's password derives from it
        self.node_id = node_id  # names this node's projection consumers, kept off reader credentials
        self.server = server  # the embedded child whose configuration is rewritten and reloaded
        self._dirty = asyncio.Event()
        self._lock = asyncio.Lock()
        self._last = ""
        self._seen_keys = ""
        self._reported: set[str] = set()
        self._next_expiry: str | None = None
        self._applied_mono = 0.0
        self.reloads = 0
        self.error = ""
        self.skipped: list[str] = []
        hub.add_listener(self._on_update)

    def _on_update(self, update: Update) -> None:
        if update.topic == Topic.REGISTRY and update.key.startswith("entity."):
            self._dirty.set()

    def mark_dirty(self) -> None:
        """Ask for a re-render (after a key was created or revoked in this process)."""
        self._dirty.set()

    def status(self) -> dict[str, Any]:
        """The readiness check: ``ok`` and a detail (the error, or users and skipped records)."""
        if self.error:
            return {"ok": False, "detail": self.error}
        detail = f"{self.reloads} reloads"
        if self.skipped:
            detail += f"; {len(self.skipped)} records left out (see the log)"
        return {"ok": True, "detail": detail}

    async def apply(self) -> bool:
        """Re-render; reload the child when the block changed. True if it reloaded.

        Raises when the render or the reload fails, after recording the error.
        """
        async with self._lock:  # one render and reload at a time (the worker, tests, start-up)
            return await self._apply()

    async def _apply(self) -> bool:
        server = self.server
        try:
            block = await build_authorization(self.db, self.secret, self.node_id)
        except Exception as exc:
            self.error = f"rendering the NATS authorization failed: {exc}"
            raise
        self.skipped = block.skipped
        self._next_expiry = block.next_expiry
        for reason in block.skipped:
            if reason not in self._reported:
                self._reported.add(reason)
                log.warning("nats authorization: left out %s", reason)
        if block.text == self._last:
            self.error = ""
            return False
        server.extra_config = block.text
        if server.running:
            try:
                await server.reload()
            except Exception as exc:
                self.error = f"reloading the NATS authorization failed: {exc}"
                raise
            self.reloads += 1
            log.info("nats authorization reloaded (%d users)", block.users)
        self._last = block.text
        self.error = ""
        return True

    async def _keys_fingerprint(self) -> str:
        # Row count, revoked count and the newest rowid change with every create and revoke
        # (timestamps alone would miss two revocations within one second).
        rows = await self.db.fetch_rows("SELECT COUNT(*), COUNT(revoked_at), MAX(rowid) FROM api_keys")
        return repr(tuple(rows[0])) if rows else ""

    def _expired(self) -> bool:
        now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        return self._next_expiry is not None and self._next_expiry < now

    async def run(self, stopping: asyncio.Event) -> None:
        """Re-render on registry and key changes (this process, or the CLI's) and at key expiry.

        Keys created or revoked in this process call ``mark_dirty`` (wired in ``build_services``).
        """
        self._seen_keys = await self._keys_fingerprint()
        while not stopping.is_set():
            try:
                await asyncio.wait_for(self._dirty.wait(), POLL_INTERVAL)
            except TimeoutError:
                pass
            if stopping.is_set():
                return
            try:
                fingerprint = await self._keys_fingerprint()
            except Exception as exc:  # noqa: BLE001 - the database is checked by readiness too
                self.error = f"reading API keys failed: {exc}"
                continue
            retry = bool(self.error) and time.monotonic() - self._applied_mono >= RETRY_INTERVAL
            if not (self._dirty.is_set() or fingerprint != self._seen_keys or self._expired() or retry):
                continue
            gap = MIN_RELOAD_GAP - (time.monotonic() - self._applied_mono)
            if gap > 0:
                await asyncio.sleep(gap)  # coalesce a burst of registry changes into one reload
            self._dirty.clear()
            self._seen_keys = fingerprint
            self._applied_mono = time.monotonic()
            try:
                await self.apply()
            except Exception:
                log.exception("updating nats authorization failed")
