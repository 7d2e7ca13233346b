"""StateKeeper: every registered entity has an EntityState value that meets the KV spec.

At start it walks every key of ``CONSTELLATION_GLOBAL_STATE`` and brings each root
value to the KV spec's Field Guarantees and the seeds' words (``conform``) with
compare-and-set, so values written by an older version (``status: inactive``,
``MEDIUM_THREAT``, ``mission: {}``) read as integrators expect without any writer losing
a scope; then it writes a value for every registered entity that has none.

After that, every ``interval`` seconds, it looks at the state cache:

* a registered entity without a value — never written, or its value expired after
  ``OVERWATCH_STATE_TTL_HOURS`` without a write (the bucket's TTL removes values
  silently) — gets one from the registry: ``offline``, not live, empty scopes. Its next
  message merges into it as usual;
* a value that breaks the guarantees again (a device or an admin wrote its own) is
  conformed once more.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from nats.js.errors import NoKeysError

from core.contracts.state import conform, new_state, violations
from core.timefmt import parse_time
from db import registry as registry_db
from db.registry import EntityRow
from fabric.state_store import StateStore
from services.state_cache import StateCache
from workers.base import Worker, WorkerContext

log = logging.getLogger("overwatch.workers.state_keeper")

MAX_INTERVAL = 30.0  # seconds between checks (less when the TTL is short)
FRESH = 10.0  # seconds: a just-registered entity's value is the entity worker's to write (its ``created`` event)


class StateKeeper(Worker):
    """Conforms stored EntityState values and restores expired ones from the registry."""

    name = "state-keeper"

    def __init__(self, ctx: WorkerContext, state_cache: StateCache) -> None:
        super().__init__(ctx)
        self.state_cache = state_cache
        self.store = StateStore(ctx.kv_state, "keeper")
        self.ttl = ctx.settings.state_ttl_hours * 3600.0
        self.interval = min(MAX_INTERVAL, max(0.5, self.ttl / 4))
        self.conformed = 0  # values brought to shape
        self.restored = 0  # values written from the registry (none stored, or expired)
        self.started = asyncio.Event()  # the start-up pass is done

    async def run(self) -> None:
        """Start-up pass, then a check every ``interval`` seconds until stopped."""
        while not self.stopping.is_set():
            try:
                await self.startup()
                break
            except Exception as exc:  # noqa: BLE001 - NATS may still be settling; the pass is retried
                self.stats.last_error = str(exc)
                log.warning("state keeper start-up pass failed (%s); retrying", exc)
                await self._pause(2.0)
        self.started.set()
        while not self.stopping.is_set():
            await self._pause(self.interval)
            if self.stopping.is_set():
                return
            try:
                await self.tick()
            except Exception as exc:  # noqa: BLE001 - logged and retried at the next tick
                self.stats.last_error = str(exc)
                log.warning("state keeper check failed: %s", exc)

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.stopping.wait(), seconds)
        except TimeoutError:
            pass

    async def startup(self) -> None:
        """Conform every stored root value; give every registered entity without one a value."""
        try:
            keys = await self.ctx.kv_state.keys()
        except NoKeysError:
            keys = []
        roots = {k for k in keys if "." not in k}  # dotted sub-keys are parts of a view, not EntityStates
        for entity_id in sorted(roots):
            await self._conform(entity_id)
        for row in await registry_db.list_entities(self.ctx.db, limit=10_000_000):
            if row.entity_id not in roots:
                await self._restore(row)
        log.info(
            "state keeper: %d values checked, %d brought to the KV spec, %d written from the registry",
            len(roots),
            self.conformed,
            self.restored,
        )

    async def tick(self) -> None:
        """Restore values that are missing or expired; conform values that broke the guarantees."""
        cache = self.state_cache
        expiring = time.time() - self.ttl + self.interval
        for row in await registry_db.list_entities(self.ctx.db, limit=10_000_000):
            view = cache.get(row.entity_id)
            if view is None or violations(row.entity_id, view):
                # No value, or one that broke the guarantees (or only dotted sub-keys): write or conform it.
                await self._restore(row)
            else:
                written = parse_time(view.get("updated_at"))
                if written is not None and written.timestamp() < expiring:
                    await self._restore(row)  # reads first: nothing happens while the value is still there
            self.stats.processed += 1

    async def _conform(self, entity_id: str) -> None:
        wrote: list[bool] = []  # the last attempt's verdict (a CAS conflict runs mutate again)

        def mutate(doc: dict[str, Any]) -> bool:
            changed = conform(doc)
            if not doc.get("entity_id"):
                doc["entity_id"] = entity_id
                changed = True
            wrote[:] = [changed]
            return changed

        if await self.store.merge(entity_id, mutate, create=False) is not None and wrote == [True]:
            self.conformed += 1

    async def _restore(self, row: EntityRow) -> None:
        current = await registry_db.get_entity(self.ctx.db, row.entity_id)
        if current is None:
            return  # deleted meanwhile: no value for an unregistered entity
        registered = parse_time(current.created_at)
        if registered is not None and time.time() - registered.timestamp() < min(FRESH, self.ttl / 2):
            return
        fresh: list[dict[str, Any]] = []  # the document ``merge`` started from defaults, if it did
        wrote: list[bool] = []

        def defaults() -> dict[str, Any]:
            doc = new_state(
                current.entity_id,
                current.org_id,
                current.entity_type,
                name=current.name,
                priority=current.priority,
                status="error" if current.status == "error" else "offline",
            )
            fresh[:] = [doc]
            return doc

        def mutate(doc: dict[str, Any]) -> bool:
            created = bool(fresh) and doc is fresh[0]
            changed = conform(doc) or created
            wrote[:] = [created]
            return changed

        self.store.forget(row.entity_id)  # the cached copy may be one the TTL removed since
        await self.store.merge(row.entity_id, mutate, defaults=defaults)
        if wrote == [True]:
            self.restored += 1
            log.info("entity %s had no state value (expired or never written): restored as offline", row.entity_id)
