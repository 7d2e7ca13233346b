"""Rendering live regions and streaming them: one place for every page's SSE stream.

A page stream subscribes to the hub topics the page shows, sends the current state of
every region first (resync, also after a reconnect), then re-renders only the regions
an update touches. Event name = partial name, with ``:<key>`` for keyed regions
(``entity-card:demo-uav-1``). Streams end on shutdown and when the client goes away.

``LiveStreams`` (the ``live`` service) is what a stream handler declares next to the
one domain service it reads: ``live.event(...)``, ``live.cached_event(...)`` and
``live.page_stream(...)``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from jinja2 import Environment
from litestar import Request
from litestar.response import ServerSentEvent, ServerSentEventMessage

from core.topics import Topic
from services.hub import Hub, Update
from services.state_cache import StateCache
from web.auth.guards import principal_of
from web.sse.stream import event_stream

RETRY_MS = 2000  # how soon a browser reconnects after the stream drops (server restart)

Messages = list[ServerSentEventMessage]
Renderer = Callable[[Sequence[Update]], Awaitable[Messages]]
OpenAlerts = Callable[[list[str] | None], Awaitable[int]]  # unacknowledged alerts of the visible organisations


def render(env: Environment, request: Request[Any, Any, Any] | None, partial: str, context: dict[str, Any]) -> str:
    """Render ``templates/partials/<partial>.html`` exactly as the page would include it.

    What ``Template.render`` does, minus its copies of the template's globals out of a
    ``ChainMap`` (one per render and one per macro import, Python-level loops that were a
    tenth of a live region's cost): the environment's globals, the only ones our templates
    have, are a plain dict merged into the context here.
    """
    template = env.get_template(f"partials/{partial}.html")
    parent = {**env.globals, "request": request, **context}
    ctx = env.context_class(env, parent, template.name, template.blocks)
    try:
        return env.concat(template.root_render_func(ctx))
    except Exception:  # noqa: BLE001 - re-raised by handle_exception
        env.handle_exception()  # Jinja's own re-raise, with the template's line in the traceback


class RenderCache:
    """Rendered keyed regions shared by every stream: one render per (region, key, version).

    Only regions that do not depend on the viewer (cards, rows, telemetry, overlays) go
    through here; visibility is still checked per stream before anything is sent.
    """

    def __init__(self, env: Environment, size: int = 20_000) -> None:
        self.env = env
        self.size = size
        self._html: OrderedDict[tuple[str, str, int], str] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, partial: str, key: str, version: int, context: Callable[[], dict[str, Any]]) -> str:
        """The region's HTML for this version, rendering it (from ``context()``) on first use."""
        slot = (partial, key, version)
        html = self._html.get(slot)
        if html is not None:
            self.hits += 1
            return html
        self.misses += 1
        html = render(self.env, None, partial, context())
        self._html[slot] = html
        if len(self._html) > self.size:
            self._html.popitem(last=False)
        return html


def context_of(**values: Any) -> Callable[[], dict[str, Any]]:
    """A context factory for ``cached_event`` (rendered only on a cache miss)."""
    return lambda: values


class LiveStreams:
    """Page streams: render regions, cache keyed ones per state version, subscribe to the hub."""

    def __init__(self, env: Environment, hub: Hub, state: StateCache, open_alerts: OpenAlerts) -> None:
        self.env = env
        self.hub = hub
        self.state = state
        self.open_alerts = open_alerts
        self.cache = RenderCache(env)

    def render(self, request: Request[Any, Any, Any] | None, partial: str, context: dict[str, Any]) -> str:
        """Render ``templates/partials/<partial>.html`` exactly as the page would include it."""
        return render(self.env, request, partial, context)

    def event(
        self, request: Request[Any, Any, Any] | None, partial: str, context: dict[str, Any], key: str = ""
    ) -> ServerSentEventMessage:
        """The SSE event carrying one rendered region."""
        name = f"{partial}:{key}" if key else partial
        return ServerSentEventMessage(event=name, data=self.render(request, partial, context))

    def cached_event(self, partial: str, key: str, context: Callable[[], dict[str, Any]]) -> ServerSentEventMessage:
        """A keyed region of one entity, rendered once per state version for every stream."""
        html = self.cache.get(partial, key, self.state.version(key), context)
        return ServerSentEventMessage(event=f"{partial}:{key}", data=html)

    async def nav_alerts(self, request: Request[Any, Any, Any]) -> ServerSentEventMessage:
        """The unacknowledged-alert badge of the navigation bar."""
        count = await self.open_alerts(principal_of(request).visible_orgs)
        return self.event(request, "nav-alerts", {"open_alerts": count})

    def page_stream(
        self,
        request: Request[Any, Any, Any],
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
        wanted = topics | {Topic.ALERTS, Topic.TOASTS}
        principal = principal_of(request)
        cache = self.state

        def accepts(update: Update) -> bool:
            if update.topic not in wanted:
                return False
            if update.topic == Topic.TOASTS:
                org_id = str(getattr(update.payload, "org_id", ""))
                return principal.sees(org_id) if org_id else principal.org_ids is None
            if update.topic == Topic.ALERTS or update.topic not in (Topic.STATE, Topic.COMMANDS, Topic.DETECTIONS):
                return True
            if keys is not None:
                return update.key in keys
            if principal.org_ids is None:
                return True
            view = cache.view(update.key)
            return view is not None and principal.sees(view.org_id)

        keyed = {Topic.STATE, Topic.COMMANDS, Topic.DETECTIONS} if keys is not None else set()
        client = self.hub.subscribe(
            accepts,
            topics=wanted - keyed,
            keys=[(topic, key) for topic in wanted & keyed for key in keys or ()],
        )

        async def first() -> Messages:
            out: Messages = [ServerSentEventMessage(comment="resync", retry=RETRY_MS, data=None)]
            out.append(await self.nav_alerts(request))
            out.extend(await resync())
            return out

        async def updates(batch: Sequence[Update]) -> Messages:
            out: Messages = []
            if any(u.topic == Topic.ALERTS for u in batch):
                out.append(await self.nav_alerts(request))
            out.extend(self.event(request, "toast", {"toast": u.payload}) for u in batch if u.topic == Topic.TOASTS)
            relevant = [u for u in batch if u.topic in topics]
            if relevant:
                out.extend(await render_updates(relevant))
            return out

        return ServerSentEvent(event_stream(self.hub, client, first, updates, max_fps=max_fps))
