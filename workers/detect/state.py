"""The worker's EntityState writes: its own scopes only, CAS-merged, throttled.

Owned: ``mission``, ``detections``, ``analytics``, ``c4isr`` and ``device_id`` (KV spec),
plus ``is_live``/``last_seen`` — a camera without telemetry is kept live by its
detection worker. Everything else in the value (telemetry, registry, commands) is left
exactly as another writer stored it: each write re-reads on conflict (``StateStore``).
Writes happen at most ``hz`` times a second, immediately when the threat picture
changes, and at least every ``heartbeat`` seconds so liveness holds in an empty scene.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from core.contracts.common import utc_now
from core.contracts.state import new_state
from fabric.state_store import StateStore

log = logging.getLogger("overwatch.detect.state")

Scopes = Callable[[], dict[str, Any]]


class StateWriter:
    """Throttled CAS writes of the detection scopes of one entity."""

    def __init__(
        self,
        store: StateStore,
        entity_id: str,
        org_id: str,
        hz: float = 2.0,
        heartbeat: float = 3.0,
        on_read: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """``on_read`` sees the entity's whole value as each write reads it (the worker follows its camera pose)."""
        self.store = store
        self.on_read = on_read
        self.entity_id, self.org_id = entity_id, org_id
        self.interval = 1.0 / max(hz, 0.1)
        self.heartbeat = heartbeat
        self._last = 0.0
        self._urgent = False
        self._dirty = False
        self._task: asyncio.Task[None] | None = None
        self.writes = 0
        self.failures = 0

    @property
    def conflicts(self) -> int:
        """CAS conflicts met (another writer got in between: re-read and retried)."""
        return self.store.conflicts

    def changed(self, urgent: bool = False) -> None:
        """Something in the scopes changed; ``urgent`` (threat change) skips the throttle."""
        self._dirty = True
        self._urgent = self._urgent or urgent

    def tick(self, scopes: Scopes) -> None:
        """Start a write when one is due and none is running (never blocks the frame loop)."""
        if self._task is not None and not self._task.done():
            return
        now = time.monotonic()
        since = now - self._last
        due = (self._dirty and (self._urgent or since >= self.interval)) or since >= self.heartbeat
        if due:
            self._last = now
            self._dirty = self._urgent = False
            self._task = asyncio.create_task(self._write(scopes()), name="detect-state-write")

    async def _write(self, scopes: dict[str, Any]) -> None:
        try:
            await self.write_now(scopes)
        except Exception as exc:  # noqa: BLE001 - NATS down or denied: count, log, try again next tick
            self.failures += 1
            self._dirty = True
            if self.failures in (1, 10) or self.failures % 100 == 0:
                log.warning("state write for %s failed (%s: %s); will retry", self.entity_id, type(exc).__name__, exc)

    async def write_now(self, scopes: dict[str, Any]) -> None:
        """One CAS merge of ``scopes`` (and liveness) into the entity's value."""

        def mutate(doc: dict[str, Any]) -> bool:
            if self.on_read is not None:
                self.on_read(doc)
            doc.update(scopes)
            doc["last_seen"] = utc_now()
            return True

        await self.store.merge(
            self.entity_id,
            mutate,
            defaults=lambda: new_state(self.entity_id, self.org_id, "isr_sensor", status="active"),
        )
        self.writes += 1

    async def drain(self) -> None:
        """Wait for a write in flight."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
