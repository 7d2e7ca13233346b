"""One watcher per process on ``CONSTELLATION_GLOBAL_STATE``: the latest state of every entity.

Every browser stream, the liveness sweep, the command dispatcher and the live-entity
API read from this cache instead of watching KV themselves. Dotted sub-keys written
by external publishers (``{entity_id}.mavlink``, ``{entity_id}.detections.objects``,
``{entity_id}.analytics.summary`` ...) are merged into the entity's view for display;
the stored root value is never modified by this merge.

An entity's organisation is the registry's (``EntityOrgs``), never the value's: each
view's ``org_id`` and ``entity_id`` are set from the registry record the key names.
A view is withheld — left out of ``get`` and ``all``, so out of every page, stream,
API, alert and rule — while the entity is not registered or its stored value names
another organisation or entity; each refused write is counted in ``rejected`` by
reason and logged when an entity's verdict changes. Registry changes re-evaluate the
entity's view at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client as NATS
from nats.js.kv import KeyValue

from core.contracts.common import DecodeError, decode_object
from core.topics import Topic
from fabric.state_store import deep_merge
from fabric.watch import follow_bucket
from services.directory import EntityOrgs
from services.hub import Hub, Update
from services.state_view import EntityView, entity_view

log = logging.getLogger(__name__)

REASONS = ("unregistered", "org_mismatch", "entity_mismatch")  # why a view is withheld
LiveListener = Callable[[str, bool, dict[str, Any]], None]


def mavlink_view(value: dict[str, Any]) -> dict[str, Any]:
    """Convert an external ``{entity_id}.mavlink`` value (raw MAVLink units) into our scopes."""
    out: dict[str, Any] = {}

    def num(key: str) -> float | None:
        v = value.get(key)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    if num("latitude") is not None and num("longitude") is not None:
        glob = {"latitude": num("latitude") / 1e7, "longitude": num("longitude") / 1e7}  # type: ignore[operator]
        if num("altitude") is not None:
            glob["altitude_msl"] = num("altitude") / 1000  # type: ignore[operator]
        if num("relative_alt") is not None:
            glob["altitude_relative"] = num("relative_alt") / 1000  # type: ignore[operator]
        out["position"] = {"global": glob}
    if num("pitch") is not None:
        out["attitude"] = {"euler": {k: num(k) for k in ("roll", "pitch", "yaw") if num(k) is not None}}
    if num("battery_remaining") is not None:
        power: dict[str, Any] = {"battery_remaining": num("battery_remaining")}
        if num("voltage_battery") is not None:
            power["voltage"] = num("voltage_battery") / 1000  # type: ignore[operator]
        out["power"] = power
    if num("ground_speed") is not None:
        vfr: dict[str, Any] = {"groundspeed": num("ground_speed")}
        if num("heading") is not None:
            vfr["heading"] = num("heading") / 100  # type: ignore[operator]
        out["vfr"] = vfr
    return out


def subkey_view(path: str, value: dict[str, Any]) -> dict[str, Any]:
    """The part of an entity's view that a dotted sub-key ``path`` contributes."""
    if path == "mavlink":
        return mavlink_view(value)
    if path == "detections.objects":
        objects = value.get("objects", value.get("tracked_objects", {}))
        return {"detections": {"objects": objects if isinstance(objects, dict) else {}}}
    view: Any = value
    for part in reversed(path.split(".")):
        view = {part: view}
    return view  # type: ignore[no-any-return]


class StateCache:
    """Latest EntityState per entity (root value merged with its dotted sub-keys)."""

    def __init__(self, nc: NATS, kv: KeyValue, hub: Hub, orgs: EntityOrgs) -> None:
        self.nc = nc
        self.kv = kv
        self.hub = hub
        self.orgs = orgs
        self.synced = asyncio.Event()
        self._roots: dict[str, dict[str, Any]] = {}
        self._subkeys: dict[str, dict[str, dict[str, Any]]] = {}
        self._views: dict[str, dict[str, Any]] = {}
        # Decoded at most once per change of the view, and only when someone reads it: a
        # telemetry burst rewrites a view many times between two reads (ingest hot path).
        self._typed: dict[str, EntityView] = {}
        self.withheld: dict[str, str] = {}  # entity_id -> why its view is not shown now
        self.rejected: dict[str, int] = dict.fromkeys(REASONS, 0)  # refused writes by reason
        self.revisions: dict[str, int] = {}
        self.versions: dict[str, int] = {}  # bumps on every change of an entity's view (root or sub-key)
        self._live_listeners: list[LiveListener] = []
        self.entries = 0
        orgs.on_change(self._on_registry_change)

    def on_live_change(self, listener: LiveListener) -> None:
        """Call ``listener(entity_id, is_live, view)`` when an entity goes live or offline."""
        self._live_listeners.append(listener)

    def get(self, entity_id: str) -> dict[str, Any] | None:
        """The merged document of one entity as stored (``None`` if none or withheld); see ``view``."""
        return self._views.get(entity_id)

    def view(self, entity_id: str) -> EntityView | None:
        """The typed view of one entity (``None`` if it has none or it is withheld)."""
        typed = self._typed.get(entity_id)
        if typed is None:
            doc = self._views.get(entity_id)
            if doc is None:
                return None
            typed = entity_view(entity_id, str(doc.get("org_id") or ""), doc, self.revisions.get(entity_id, 0))
            self._typed[entity_id] = typed
        return typed

    def views(self) -> dict[str, EntityView]:
        """Every shown entity's typed view (a new dict; the views themselves are shared)."""
        return {entity_id: typed for entity_id in self._views if (typed := self.view(entity_id)) is not None}

    def org_of(self, entity_id: str) -> str | None:
        """The entity's organisation according to the registry (``None``: not registered)."""
        return self.orgs.org_of(entity_id)

    def version(self, entity_id: str) -> int:
        """A counter that changes whenever the entity's view changes (for render caches)."""
        return self.versions.get(entity_id, 0)

    def all(self) -> dict[str, dict[str, Any]]:
        """Every shown entity's merged view (do not modify)."""
        return self._views

    def apply(self, key: str, value: bytes | None, revision: int) -> None:
        """Apply one bucket entry (``value=None`` = deleted)."""
        self.entries += 1
        entity_id, _, path = key.partition(".")
        doc: dict[str, Any] | None = None
        if value:
            try:
                doc = decode_object(value)
            except DecodeError:
                log.warning("state %s rev %d is not a JSON object; ignored for display", key, revision)
                return
        old_live = bool(self._views.get(entity_id, {}).get("is_live"))
        if path:
            subs = self._subkeys.setdefault(entity_id, {})
            if doc is None:
                subs.pop(path, None)
            else:
                subs[path] = doc
        else:
            if doc is None:
                self._roots.pop(entity_id, None)
                self.revisions.pop(entity_id, None)
            else:
                self._roots[entity_id] = doc
                self.revisions[entity_id] = revision
        self._changed(entity_id, old_live, written=doc is not None)

    def touch(self, entity_id: str) -> None:
        """Announce the entity again (a new version) though its value did not change: what a page shows of it
        from elsewhere did (an edge box's link state)."""
        if entity_id in self._views:
            self._changed(entity_id, bool(self._views[entity_id].get("is_live")), written=False)

    def _on_registry_change(self, entity_id: str) -> None:
        """The registry (un)registered the entity or changed its organisation: judge its view again."""
        if entity_id in self._roots or entity_id in self._subkeys:
            self._changed(entity_id, bool(self._views.get(entity_id, {}).get("is_live")), written=False)

    def _changed(self, entity_id: str, old_live: bool, written: bool) -> None:
        view = self._rebuild(entity_id, written)
        self.versions[entity_id] = self.versions.get(entity_id, 0) + 1
        self.hub.publish(Update(Topic.STATE, entity_id))
        new_live = bool(view and view.get("is_live"))
        if view is not None and new_live != old_live:
            for listener in self._live_listeners:
                try:
                    listener(entity_id, new_live, view)
                except Exception:
                    log.exception("live listener failed for %s", entity_id)

    def _refusal(self, entity_id: str, root: dict[str, Any] | None) -> tuple[str, str] | None:
        """Why the entity's view may not be shown (reason, explanation), or ``None``."""
        org_id = self.orgs.org_of(entity_id)
        if org_id is None:
            return "unregistered", "the entity is not registered"
        if root is None:
            return None
        named_org = root.get("org_id")
        if named_org not in (None, "") and named_org != org_id:
            return "org_mismatch", f"its value names organisation {named_org!r}, the registry {org_id!r}"
        named_entity = root.get("entity_id")
        if named_entity not in (None, "") and named_entity != entity_id:
            return "entity_mismatch", f"its value names entity {named_entity!r}"
        return None

    def _rebuild(self, entity_id: str, written: bool = False) -> dict[str, Any] | None:
        root = self._roots.get(entity_id)
        subs = self._subkeys.get(entity_id) or {}
        if root is None and not subs:
            self._views.pop(entity_id, None)
            self._typed.pop(entity_id, None)
            self.withheld.pop(entity_id, None)
            return None
        refusal = self._refusal(entity_id, root)
        if refusal is not None:
            reason, why = refusal
            self._views.pop(entity_id, None)
            self._typed.pop(entity_id, None)
            if written:
                self.rejected[reason] += 1
            if self.withheld.get(entity_id) != reason:
                # Once per verdict, not per write: a device at 10 Hz must not flood the log.
                level = logging.INFO if reason == "unregistered" else logging.WARNING
                log.log(level, "state of %s not shown (%s): %s", entity_id, reason, why)
            self.withheld[entity_id] = reason
            return None
        if self.withheld.pop(entity_id, None) is not None:
            log.info("state of %s shown again", entity_id)
        view: dict[str, Any] = dict(root) if root else {"entity_id": entity_id, "is_live": False}
        for path, value in sorted(subs.items()):
            view = deep_merge(view, subkey_view(path, value))
        # The key and the registry say whose entity this is; the value never does.
        view["entity_id"] = entity_id
        org_id = self.orgs.org_of(entity_id)
        view["org_id"] = org_id
        self._views[entity_id] = view
        self._typed.pop(entity_id, None)  # decoded again on the next read
        return view

    async def run(self, stopping: asyncio.Event) -> None:
        """Follow the bucket until ``stopping`` is set (re-watching after reconnects)."""

        if not self.orgs.loaded:
            await self.orgs.load()  # before the first value: every view is judged by the registry

        async def on_entry(entry: KeyValue.Entry) -> None:
            value = None if entry.operation in ("DEL", "PURGE") else entry.value
            self.apply(entry.key, value, entry.revision or 0)

        async def on_synced() -> None:
            if not self.synced.is_set():
                log.info("state cache synced (%d entities)", len(self._views))
            self.synced.set()

        await follow_bucket(self.nc, self.kv, on_entry, stopping, on_synced)
