"""Rendering live regions and streaming them: one place for every page's SSE stream.

A page stream subscribes to the hub topics the page shows, sends the current state of
every region first (resync, also after a reconnect), then re-renders only the regions
an update touches. Event name = partial name, with ``:<key>`` for keyed regions
(``entity-card:demo-uav-1``). Streams end on shutdown and when the client goes away.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from litestar import Request
from litestar.response import ServerSentEvent, ServerSentEventMessage

from app.auth.guards import principal_of
from app.runtime import Runtime
from app.sse.hub import Update
from app.sse.stream import event_stream

RETRY_MS = 2000  # how soon a browser reconnects after the stream drops (server restart)
ALERTS_TOPIC = "alerts"

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
) -> ServerSentEvent:
    """A page's SSE response: resync, then live updates of the regions it shows."""
    wanted = topics | {ALERTS_TOPIC}
    client = runtime.hub.subscribe(lambda u: u.topic in wanted)

    async def first() -> Messages:
        out: Messages = [ServerSentEventMessage(comment="resync", retry=RETRY_MS, data=None)]
        out.append(await nav_alerts(runtime, request))
        out.extend(await resync())
        return out

    async def updates(batch: Sequence[Update]) -> Messages:
        out: Messages = []
        if any(u.topic == ALERTS_TOPIC for u in batch):
            out.append(await nav_alerts(runtime, request))
        relevant = [u for u in batch if u.topic in topics]
        if relevant:
            out.extend(await render_updates(relevant))
        return out

    return ServerSentEvent(event_stream(runtime.hub, client, first, updates, max_fps=max_fps))
