"""Rendering live regions and streaming them: one place for every page's SSE stream.

A page stream subscribes to the hub topics the page shows, sends the current state of
every region first (resync, also after a reconnect), then re-renders only the regions
an update touches. Event name = partial name, with ``:<key>`` for keyed regions
(``entity-card:demo-uav-1``). Streams end on shutdown and when the client goes away.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from litestar import Request
from litestar.response import ServerSentEvent, ServerSentEventMessage

from services.hub import Update
from web.auth.guards import principal_of
from web.sse.stream import event_stream

if TYPE_CHECKING:
    from app.runtime import Runtime

RETRY_MS = 2000  # how soon a browser reconnects after the stream drops (server restart)
ALERTS_TOPIC = "alerts"
TOAST_TOPIC = "toasts"  # rule firings (services.alerts.service): a ``toast`` event on every page stream

Messages = list[ServerSentEventMessage]
Renderer = Callable[[Sequence[Update]], Awaitable[Messages]]


def render(runtime: Runtime, request: Request[Any, Any, Any] | None, partial: str, context: dict[str, Any]) -> str:
    """Render ``templates/partials/<partial>.html`` exactly as the page would include it."""
    env = runtime.services.templates
    return env.get_template(f"partials/{partial}.html").render({"request": request, **context})


def event(
    runtime: Runtime, request: Request[Any, Any, Any] | None, partial: str, context: dict[str, Any], key: str = ""
) -> ServerSentEventMessage:
    """The SSE event carrying one rendered region."""
    name = f"{partial}:{key}" if key else partial
    return ServerSentEventMessage(event=name, data=render(runtime, request, partial, context))


class RenderCache:
    """Rendered keyed regions shared by every stream: one render per (region, key, version).

    Only regions that do not depend on the viewer (cards, rows, telemetry, overlays) go
    through here; visibility is still checked per stream before anything is sent.
    """

    def __init__(self, size: int = 20_000) -> None:
        self.size = size
        self._html: OrderedDict[tuple[str, str, int], str] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, runtime: Runtime, partial: str, key: str, version: int, context: Callable[[], dict[str, Any]]) -> str:
        """The region's HTML for this version, rendering it (from ``context()``) on first use."""
        slot = (partial, key, version)
        html = self._html.get(slot)
        if html is not None:
            self.hits += 1
            return html
        self.misses += 1
        html = render(runtime, None, partial, context())
        self._html[slot] = html
        if len(self._html) > self.size:
            self._html.popitem(last=False)
        return html


def cached_event(
    runtime: Runtime, partial: str, key: str, context: Callable[[], dict[str, Any]]
) -> ServerSentEventMessage:
    """A keyed region of one entity, rendered once per state version for every stream."""
    version = runtime.services.state_cache.version(key)
    html = runtime.services.render_cache.get(runtime, partial, key, version, context)
    return ServerSentEventMessage(event=f"{partial}:{key}", data=html)


def context_of(**values: Any) -> Callable[[], dict[str, Any]]:
    """A context factory for ``cached_event`` (rendered only on a cache miss)."""
    return lambda: values


async def nav_alerts(runtime: Runtime, request: Request[Any, Any, Any]) -> ServerSentEventMessage:
    """The unacknowledged-alert badge of the navigation bar."""
    count = await runtime.services.console.open_alerts(principal_of(request).visible_orgs)
    return event(runtime, request, "nav-alerts", {"open_alerts": count})


def page_stream(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    topics: set[str],
    resync: Callable[[], Awaitable[Messages]],
    render_updates: Renderer,
    max_fps: float = 10.0,
    keys: set[str] | None = None,
) -> ServerSentEvent:
    """A page's SSE response: resync, then live updates of the regions it shows.

    Updates are filtered when they are offered, not when rendered, so a stream's queue
    only ever holds what it will send: its topics, only ``keys`` when given (a page
    about one entity), and only entities of organisations the caller may see.
    """
    wanted = topics | {ALERTS_TOPIC, TOAST_TOPIC}
    principal = principal_of(request)
    cache = runtime.services.state_cache

    def accepts(update: Update) -> bool:
        if update.topic not in wanted:
            return False
        if update.topic == TOAST_TOPIC:
            org_id = str(getattr(update.payload, "org_id", ""))
            return principal.sees(org_id) if org_id else principal.org_ids is None
        if update.topic == ALERTS_TOPIC or update.topic not in ("state", "commands", "detections"):
            return True
        if keys is not None:
            return update.key in keys
        if principal.org_ids is None:
            return True
        view = cache.get(update.key)
        return view is not None and principal.sees(str(view.get("org_id") or ""))

    client = runtime.hub.subscribe(accepts)

    async def first() -> Messages:
        out: Messages = [ServerSentEventMessage(comment="resync", retry=RETRY_MS, data=None)]
        out.append(await nav_alerts(runtime, request))
        out.extend(await resync())
        return out

    async def updates(batch: Sequence[Update]) -> Messages:
        out: Messages = []
        if any(u.topic == ALERTS_TOPIC for u in batch):
            out.append(await nav_alerts(runtime, request))
        out.extend(event(runtime, request, "toast", {"toast": u.payload}) for u in batch if u.topic == TOAST_TOPIC)
        relevant = [u for u in batch if u.topic in topics]
        if relevant:
            out.extend(await render_updates(relevant))
        return out

    return ServerSentEvent(event_stream(runtime.hub, client, first, updates, max_fps=max_fps))
