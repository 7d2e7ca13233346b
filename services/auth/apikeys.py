"""API keys: ``c4_live_`` + 32 random bytes (hex), shown once, stored as HMAC-SHA256.

A key carries scopes (``read``, ``commands``, ``admin``), optionally one organisation,
an optional expiry, and optionally NATS credentials: an NKey user that is either a
*device* (publishes its organisation's data) or a *reader* (an integrator that only
reads — every organisation, or one with ``org_id``); see ``services/nats_auth.py``.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import nkeys

from core import topology
from core.contracts.common import new_id, utc_now
from core.errors import Invalid, NotFound
from db import apikeys as keys_db
from db.apikeys import ApiKeyRow
from db.database import Database
from db.registry import OrgRow
from services.audit import CLI, AuditService, Origin
from services.auth.principal import Principal, key_principal
from services.registry import org_choices

PREFIX = "c4_live_"
SCOPES = ("read", "commands", "admin")
ROLE_SCOPES = {"viewer": ["read"], "operator": ["read", "commands"], "admin": ["read", "commands", "admin"]}
MARK_USED_EVERY = 60.0  # seconds
MAX_EXPIRES_DAYS = 36500.0  # a hundred years; beyond that ``timedelta`` overflows soon anyway
NATS_KINDS = ("device", "reader")


class NewKey(msgspec.Struct, kw_only=True):
    """A freshly created key: the only time the key (and NATS seed) are visible."""

    key_id: str
    name: str
    key: str
    scopes: list[str]
    org_id: str | None
    expires_at: str | None
    nats_seed: str | None = None
    nats_user: str | None = None
    nats_kind: str | None = None  # "device" or "reader" with NATS credentials


class KeyView(msgspec.Struct, kw_only=True):
    """A key as lists show it (never the key)."""

    key_id: str
    name: str
    prefix: str
    scopes: list[str]
    org_id: str | None
    nats: bool
    nats_kind: str | None  # "device" or "reader" when ``nats``
    created_by: str
    created_at: str
    expires_at: str | None
    last_used_at: str | None
    revoked_at: str | None


def view(row: ApiKeyRow) -> KeyView:
    """List view of a key row."""
    return KeyView(
        key_id=row.key_id,
        name=row.name,
        prefix=row.prefix,
        scopes=row.scope_list,
        org_id=row.org_id,
        nats=bool(row.nats_pubkey),
        nats_kind=row.nats_kind if row.nats_pubkey else None,
        created_by=row.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


class ApiKeyService:
    """Create, resolve, list and revoke API keys."""

    def __init__(self, db: Database, audit: AuditService, secret: str, nats_url: str = "") -> None:
        self.db = db
        self.audit = audit
        self._secret = secret.encode()
        self.nats_url = nats_url  # what a device or reader connects to, shown beside new NATS credentials
        self._last_marked: dict[str, float] = {}
        self._listeners: list[Callable[[], None]] = []
        self.changed_at = time.time()

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after every key created or revoked by this service (the NATS users follow)."""
        self._listeners.append(callback)

    def _changed(self) -> None:
        self.changed_at = time.time()
        for callback in self._listeners:
            callback()

    def digest(self, key: str) -> str:
        """HMAC-SHA256 of a key with the instance secret."""
        return hmac.new(self._secret, key.encode(), hashlib.sha256).hexdigest()

    async def create(
        self,
        actor: Principal | str,
        name: str,
        scopes: list[str],
        org_id: str | None,
        expires_days: float | None = None,
        nats: bool = False,
        origin: Origin = CLI,
        nats_kind: str = "device",
    ) -> NewKey:
        """Create a key; the returned ``NewKey`` is the only copy of the secret parts.

        With ``nats``, ``nats_kind`` says which NATS user it becomes: a ``device`` (needs an
        organisation) or a ``reader`` (read-only; without an organisation it reads every one).
        """
        name = name.strip()[:100]
        if not name:
            raise Invalid("a key needs a name")
        bad = [s for s in scopes if s not in SCOPES]
        if bad or not scopes:
            raise Invalid(f"scopes must be some of {', '.join(SCOPES)}")
        if nats and nats_kind not in NATS_KINDS:
            raise Invalid(f"NATS credentials are a {' or a '.join(NATS_KINDS)}, not {nats_kind[:40]!r}")
        if nats and nats_kind == "device" and org_id is None:
            raise Invalid("device NATS credentials are issued per organisation: give the key an organisation")
        if nats and nats_kind == "reader" and scopes != ["read"]:
            # A reader never publishes; a key that may send commands over HTTP would say otherwise.
            raise Invalid("NATS reader credentials go with a read-only (viewer) key")
        if org_id is not None and not topology.TOKEN_RE.match(org_id):
            # The organisation becomes a token of the key's NATS subjects: refuse what cannot be one.
            raise Invalid(f"organisation id {org_id[:140]!r} must be 1-128 letters, digits, '-' or '_'")
        key = PREFIX + secrets.token_hex(32)
        expires = None
        if expires_days is not None:
            if not math.isfinite(expires_days) or expires_days <= 0:
                raise Invalid("expiry must be a number of days in the future")
            if expires_days > MAX_EXPIRES_DAYS:
                raise Invalid(f"expiry must be at most {MAX_EXPIRES_DAYS:.0f} days")
            expires = (datetime.now(UTC) + timedelta(days=expires_days)).isoformat(timespec="seconds")
        seed = pub = None
        if nats:
            kp = nkeys.from_seed(nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER))
            seed, pub = kp.seed.decode(), kp.public_key.decode()
        row = ApiKeyRow(
            key_id=new_id(),
            name=name,
            prefix=key[: len(PREFIX) + 6],
            key_hash=self.digest(key),
            scopes=",".join(s for s in SCOPES if s in scopes),
            org_id=org_id,
            nats_pubkey=pub,
            created_by=actor.label if isinstance(actor, Principal) else actor,
            created_at=utc_now(),
            expires_at=expires,
            last_used_at=None,
            revoked_at=None,
            nats_kind=nats_kind if nats else "device",
        )
        await keys_db.insert_key(self.db, row)
        self._changed()
        changes: dict[str, list[Any]] = {"scopes": [None, row.scope_list], "nats": [None, nats]}
        if nats:
            changes["nats_kind"] = [None, nats_kind]
        await self.audit.record(
            actor,
            "apikey.create",
            target=f"{name} ({row.key_id})",
            org_id=org_id or "",
            origin=origin,
            changes=changes,
        )
        return NewKey(
            key_id=row.key_id,
            name=name,
            key=key,
            scopes=row.scope_list,
            org_id=org_id,
            expires_at=expires,
            nats_seed=seed,
            nats_user=pub,
            nats_kind=nats_kind if nats else None,
        )

    async def resolve(self, key: str) -> Principal | None:
        """The principal of a presented key, or ``None`` (unknown, revoked or expired)."""
        if not key.startswith(PREFIX) or len(key) != len(PREFIX) + 64:
            return None
        row = await keys_db.by_hash(self.db, self.digest(key))
        if row is None or row.revoked_at is not None:
            return None
        if row.expires_at and row.expires_at < datetime.now(UTC).isoformat(timespec="seconds"):
            return None
        now = time.time()
        if now - self._last_marked.get(row.key_id, 0.0) > MARK_USED_EVERY:
            self._last_marked[row.key_id] = now
            await keys_db.mark_used(self.db, row.key_id, utc_now())
        return key_principal(row.key_id, row.name, row.scope_list, row.org_id)

    async def org_choices(self) -> list[OrgRow]:
        """The organisations a key can be limited to."""
        return await org_choices(self.db)

    async def list_keys(self, include_revoked: bool = False) -> list[KeyView]:
        """Keys, newest first."""
        return [view(r) for r in await keys_db.list_keys(self.db, include_revoked)]

    async def revoke(self, actor: Principal | str, key_id: str, origin: Origin = CLI) -> KeyView:
        """Revoke a key (its NATS user disappears with the next config reload)."""
        row = await keys_db.get_key(self.db, key_id)
        if row is None:
            raise NotFound(f"api key {key_id} not found")
        if await keys_db.revoke_key(self.db, key_id, utc_now()):
            self._changed()
            await self.audit.record(
                actor, "apikey.revoke", target=f"{row.name} ({key_id})", org_id=row.org_id or "", origin=origin
            )
        updated = await keys_db.get_key(self.db, key_id)
        assert updated is not None
        return view(updated)
