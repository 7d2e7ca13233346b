"""Following a KV bucket robustly: snapshot, live changes, and re-watch after reconnects.

nats-py's watcher is an ephemeral ordered consumer; if the server restarts it can be
lost. ``follow_bucket`` re-creates the watcher whenever the connection reconnected,
replaying the latest value per key again (consumers must be idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from nats.aio.client import Client as NATS
from nats.js.kv import KeyValue

log = logging.getLogger(__name__)

OnEntry = Callable[[KeyValue.Entry], Awaitable[None]]


async def follow_bucket(
    nc: NATS,
    kv: KeyValue,
    on_entry: OnEntry,
    stopping: asyncio.Event,
    on_synced: Callable[[], Awaitable[None]] | None = None,
    keys: str = ">",
) -> None:
    """Call ``on_entry`` for the snapshot and every change until ``stopping`` is set."""
    while not stopping.is_set():
        reconnects = nc.stats.get("reconnects", 0)
        try:
            watcher = await kv.watch(keys)
        except Exception as exc:  # noqa: BLE001 - NATS may be restarting; try again shortly
            log.warning("watch %s failed: %s", keys, exc)
            await asyncio.sleep(1.0)
            continue

        async def consume(w: KeyValue.KeyWatcher = watcher) -> None:
            # Plain iteration: no timer per entry (that is what updates(timeout) would cost).
            async for entry in w:
                if entry is None:
                    if on_synced is not None:
                        await on_synced()
                    continue
                await on_entry(entry)

        reader = asyncio.create_task(consume(), name=f"watch-{keys}")
        stop_waiter = asyncio.create_task(stopping.wait())
        try:
            while not stopping.is_set() and not reader.done():
                await asyncio.wait({reader, stop_waiter}, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                if nc.stats.get("reconnects", 0) != reconnects:
                    log.info("watch %s: reconnected, re-watching", keys)
                    break
        finally:
            stop_waiter.cancel()
            with contextlib.suppress(Exception):
                await watcher.stop()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        if reader.done() and not reader.cancelled() and reader.exception() is not None:
            log.error("watch %s failed: %s", keys, reader.exception())
            await asyncio.sleep(1.0)
