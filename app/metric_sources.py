"""Wiring of ``Metrics`` to the started runtime: which parts of the process it observes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from fabric.state_store import StateStore
from services.metrics.otel import KvWriter, MetricSources
from workers.registry import RegistryProjector

if TYPE_CHECKING:
    from app.runtime import Runtime


@runtime_checkable
class WritesState(Protocol):
    """A worker that writes EntityState through its own ``StateStore``."""

    store: StateStore


def state_writers(rt: Runtime) -> dict[str, KvWriter]:
    """Every EntityState writer of the process by writer name: the workers' stores and the command service's."""
    stores = [w.store for w in rt.workers.workers if isinstance(w, WritesState) and isinstance(w.store, StateStore)]
    stores.append(rt.services.commands.store)
    return {store.writer: store for store in stores}


def rejected(rt: Runtime) -> Mapping[str, Mapping[str, int]]:
    """Records refused because they disagree with the registry: by source, then reason."""
    out: dict[str, Mapping[str, int]] = {"state": dict(rt.services.state_cache.rejected)}
    for worker in rt.workers.workers:
        if isinstance(worker, RegistryProjector):
            out["registry"] = dict(worker.rejected)
    return out


def metric_sources(rt: Runtime) -> MetricSources:
    """What ``rt.metrics`` observes; call once the runtime's services and workers exist."""
    workers = rt.workers
    cache = rt.services.state_cache
    return MetricSources(
        js=rt.js,
        sse_clients=lambda: rt.hub.client_count,
        worker_stats=workers.stats,
        worker_status=workers.status,
        dlq_refused=lambda: workers.dlq_refused().total(),
        kv_writers=lambda: state_writers(rt),
        entity_views=cache.views,
        rejected=lambda: rejected(rt),
    )
