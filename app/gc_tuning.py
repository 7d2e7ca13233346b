"""Garbage-collector settings for a long-running server with many live streams.

With a thousand SSE streams the heap holds a few hundred thousand container objects;
CPython's full collection walks all of them and stalled the event loop for 100–250 ms
a few times a minute (every stream's update waited behind it: the console benchmark's
p99). What was allocated while starting (modules, templates, the app, the caches) lives
as long as the process, so it is frozen out of collection, and young collections run
less often (each is still cheap: only objects that are not freed by reference counting
reach the collector at all).
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger("overwatch.gc")

THRESHOLDS = (20_000, 20, 20)  # gen0 allocations, gen0 runs per gen1 run, gen1 runs per gen2 run


def settle_after_start() -> None:
    """Collect once, freeze what survives (it lives as long as the process), widen the thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    log.debug("gc: %d objects frozen, thresholds %s", gc.get_freeze_count(), THRESHOLDS)
