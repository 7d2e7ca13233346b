"""Authorization of the embedded nats-server: the server's own user and one NKey user per API key.

The embedded server never accepts anonymous clients. The server process connects as
user ``overwatch`` with a password derived from the instance secret (command-line
tools on the same box derive the same one). Every API key created with NATS
credentials becomes an NKey user whose permissions cover only its organisation:
publish its telemetry, events, acks, announcements, its entities' video frames and
their KV keys; subscribe to its organisation's commands and to its own reply inbox.
The block is re-rendered when keys or entities change and the child reloads it (SIGHUP).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from typing import TYPE_CHECKING

from app import topology
from db import apikeys as keys_db
from db import registry as registry_db

if TYPE_CHECKING:
    from app.runtime import Runtime

log = logging.getLogger("overwatch.nats.auth")

INTERNAL_USER = "overwatch"
STATE_PREFIX = f"$KV.{topology.BUCKET_STATE}"
STATE_STREAM = topology.kv_stream(topology.BUCKET_STATE)


def internal_password(secret: str) -> str:
    """The embedded server's password for the server's own connection (and local tools)."""
    return hmac.new(secret.encode(), b"nats-internal", hashlib.sha256).hexdigest()


def inbox_prefix(key_id: str) -> str:
    """The reply-inbox prefix a key's NATS client must use (``inbox_prefix`` in nats-py)."""
    return f"_INBOX.{key_id.replace('-', '')}"


def device_permissions(org_id: str, entity_ids: list[str], key_id: str) -> dict[str, dict[str, list[str]]]:
    """Subjects an organisation's device credentials may publish to and subscribe on."""
    org = topology.token(org_id, "org_id")
    publish = [
        f"{topology.PREFIX}.telemetry.{org}.*",
        f"{topology.PREFIX}.events.*.{org}.*",
        f"{topology.PREFIX}.commands.{org}.*.ack",
        f"{topology.PREFIX}.entities.{org}.created",
        f"{topology.PREFIX}.entities.{org}.status",
        f"$JS.API.STREAM.INFO.{STATE_STREAM}",
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


async def render_authorization(runtime: Runtime) -> str:
    """The ``authorization`` block of the embedded server's configuration."""
    users: list[dict[str, object]] = [{"user": INTERNAL_USER, "password": internal_password(runtime.secret)}]
    keys = [k for k in await keys_db.list_keys(runtime.db) if k.nats_pubkey and k.org_id]
    by_org: dict[str, list[str]] = {}
    now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    for key in keys:
        if key.expires_at and key.expires_at < now:
            continue
        org = key.org_id or ""
        if org not in by_org:
            rows = await registry_db.list_entities(runtime.db, org_id=org, limit=1_000_000)
            by_org[org] = [r.entity_id for r in rows]
        users.append({"nkey": key.nats_pubkey, "permissions": device_permissions(org, by_org[org], key.key_id)})
    # JSON is valid nats-server configuration syntax.
    return "authorization " + json.dumps({"users": users}, indent=1)


class NatsAuthManager:
    """Keeps the embedded server's users in step with API keys and the registry."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._dirty = asyncio.Event()
        self._last = ""
        self._seen_keys = ""
        self.reloads = 0
        runtime.hub.add_listener(self._on_update)

    def _on_update(self, update: object) -> None:
        key = getattr(update, "key", "")
        if getattr(update, "topic", "") == "registry" and isinstance(key, str) and key.startswith("entity."):
            self._dirty.set()

    def mark_dirty(self) -> None:
        """Ask for a re-render (after a key was created or revoked in this process)."""
        self._dirty.set()

    async def apply(self) -> bool:
        """Re-render; reload the child when the block changed. True if it reloaded."""
        server = self.runtime.nats_server
        if server is None:
            return False
        text = await render_authorization(self.runtime)
        if text == self._last:
            return False
        self._last = text
        server.extra_config = text
        if server.running:
            await server.reload()
            self.reloads += 1
            log.info("nats authorization reloaded (%d users)", text.count('"nkey"') + 1)
        return True

    async def _keys_fingerprint(self) -> str:
        rows = await self.runtime.db.fetch_rows("SELECT COUNT(*), MAX(created_at), MAX(revoked_at) FROM api_keys")
        return repr(tuple(rows[0])) if rows else ""

    async def run(self, stopping: asyncio.Event) -> None:
        """Re-render on registry changes, on key changes, and when another process (the CLI) changed keys."""
        self._seen_keys = await self._keys_fingerprint()
        while not stopping.is_set():
            try:
                await asyncio.wait_for(self._dirty.wait(), 2.0)
            except TimeoutError:
                pass
            fingerprint = await self._keys_fingerprint()
            if not self._dirty.is_set() and fingerprint == self._seen_keys:
                continue
            await asyncio.sleep(0.3)  # debounce bursts of registry changes
            self._dirty.clear()
            self._seen_keys = fingerprint
            try:
                await self.apply()
            except Exception:
                log.exception("updating nats authorization failed")
