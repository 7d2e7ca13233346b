"""The entity detail page: telemetry, attitude, sparklines, commands, detections, alerts, video."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.response import Redirect, ServerSentEvent, Template

from app.runtime import Runtime
from core.contracts.common import utc_now
from core.errors import AppError, Invalid, NotFound
from db import alerts as alerts_db
from db import commands as commands_db
from db import detections as detections_db
from db import embeds as embeds_db
from db import registry as registry_db
from db import tracks as tracks_db
from services.console.cards import entity_card, tracked_objects
from services.hub import Update
from services.mavlink.readiness import readiness as vehicle_readiness
from services.schemas import CommandCreate
from web.admin.forms import read_form
from web.api.params import IdPath
from web.api.views import alert_view, detection_view
from web.auth.guards import authorize, principal_of, requires
from web.console.charts import Sparkline, sparkline
from web.console.safety import CONFIRM_COMMANDS, confirmation_missing
from web.sse.live import Messages, event, page_stream

Req = Request[Any, Any, Any]
SPARK_WINDOW = 15 * 60  # seconds of history in the sparklines
SPARK_TTL = 10.0  # seconds a rendered sparkline is reused
COMMANDS = ("goto", "rtl", "land", "takeoff", "hold", "resume", "set_mode", "set_speed", "arm", "disarm")


class CommandForm(msgspec.Struct, kw_only=True):
    """The command form of the entity page (fields unused by a command are ignored)."""

    command: str
    latitude: str = ""
    longitude: str = ""
    altitude: str = ""
    mode: str = ""
    speed: str = ""
    confirm: str = ""  # "yes" once the hold gesture (or the no-JS Confirm box) confirmed arm/disarm/takeoff/land
    force: str = ""  # forced disarm (admins)

    def to_command(self) -> CommandCreate:
        """The API body this form stands for."""
        params: dict[str, Any] = {}
        fields = {
            "goto": ("latitude", "longitude", "altitude"),
            "takeoff": ("altitude",),
            "set_mode": ("mode",),
            "set_speed": ("speed",),
        }.get(self.command, ())
        for name in fields:
            raw = getattr(self, name).strip()
            if raw:
                params[name] = raw.upper() if name == "mode" else float(raw)
        if self.command == "disarm" and self.force == "yes":
            params["force"] = True
        return CommandCreate(command=self.command, params=params)


class EntityPageData:
    """Builds the regions of one entity's page (sparklines cached briefly)."""

    _sparks: dict[str, tuple[float, tuple[Sparkline, Sparkline]]] = {}

    def __init__(self, runtime: Runtime, entity_id: str) -> None:
        self.runtime = runtime
        self.entity_id = entity_id

    def view(self) -> dict[str, Any]:
        """The merged state view (empty until the entity has state, or while it is withheld).

        Its ``org_id`` is always the registry's, so the command and admin controls follow
        the entity's real organisation, never one a stored value names.
        """
        cache = self.runtime.services.state_cache
        view = cache.get(self.entity_id)
        return view if view is not None else {"entity_id": self.entity_id, "org_id": cache.org_of(self.entity_id) or ""}

    async def sparklines(self) -> tuple[Sparkline, Sparkline]:
        """Battery and altitude history from the stored track."""
        hit = self._sparks.get(self.entity_id)
        if hit and time.monotonic() - hit[0] < SPARK_TTL:
            return hit[1]
        points = await tracks_db.recent_track(self.runtime.db, self.entity_id, time.time() - SPARK_WINDOW, 500)
        lines = (
            sparkline([(p.ts, p.battery) for p in points], "Battery", "%", 0, 100),
            sparkline([(p.ts, p.altitude) for p in points], "Altitude", "m"),
        )
        self._sparks[self.entity_id] = (time.monotonic(), lines)
        return lines

    async def state_context(self, request: Req) -> dict[str, Any]:
        """Regions fed by the state cache (no database query except the cached sparklines)."""
        view = self.view()
        battery, altitude = await self.sparklines()
        principal = principal_of(request)
        return {
            "card": entity_card(view),
            "view": view,
            "objects": tracked_objects(view),
            "battery_line": battery,
            "altitude_line": altitude,
            "video": self.runtime.services.video.source(self.entity_id),
            "can_command": principal.can_in("commands", str(view.get("org_id") or "")),
            "is_admin": principal.can_in("admin", str(view.get("org_id") or "")),
            "command_names": COMMANDS,
            "confirm_commands": CONFIRM_COMMANDS,
            "readiness": vehicle_readiness(view, self.runtime.settings.battery_alert_percent),
            "flash": "",
            "error": "",
        }

    async def commands_context(self) -> dict[str, Any]:
        """The command list."""
        return {"commands": await commands_db.list_commands(self.runtime.db, self.entity_id, 15)}

    async def detections_context(self) -> dict[str, Any]:
        """Recent detection events."""
        rows = await detections_db.list_detections(self.runtime.db, self.entity_id, 20)
        return {"detections": [detection_view(r) for r in rows]}

    async def alerts_context(self) -> dict[str, Any]:
        """This entity's alerts."""
        rows = await alerts_db.list_alerts(self.runtime.db, entity_id=self.entity_id, limit=10)
        return {"alerts": [alert_view(r) for r in rows]}

    async def context(self, request: Req) -> dict[str, Any]:
        """Every region's context (first render and resync)."""
        record = await registry_db.get_entity(self.runtime.db, self.entity_id)
        return {
            **await self.state_context(request),
            **await self.commands_context(),
            **await self.detections_context(),
            **await self.alerts_context(),
            "record": record.to_record() if record else None,
            "embed_public": await embeds_db.is_public(self.runtime.db, "entity", self.entity_id),
        }


async def _visible_entity(request: Req, runtime: Runtime, entity_id: str) -> str:
    row = await registry_db.get_entity(runtime.db, entity_id)
    if row is None:
        raise NotFound(f"entity {entity_id} not found")
    await authorize(request, row.org_id, "read")
    return row.org_id


class EntityPageController(Controller):
    """``/entities/{entity_id}`` and its stream and forms."""

    include_in_schema = False
    guards = [requires("read")]

    @get("/entities/{entity_id:str}")
    async def entity(self, request: Req, entity_id: IdPath, runtime: NamedDependency[Runtime]) -> Template:
        """The detail page."""
        await _visible_entity(request, runtime, entity_id)
        ctx = await EntityPageData(runtime, entity_id).context(request)
        return Template("pages/entity.html", context={**ctx, "active": "fleet"})

    @get("/events/entity/{entity_id:str}")
    async def entity_events(
        self, request: Req, entity_id: IdPath, runtime: NamedDependency[Runtime]
    ) -> ServerSentEvent:
        """Live regions of one entity."""
        await _visible_entity(request, runtime, entity_id)
        page = EntityPageData(runtime, entity_id)

        async def resync() -> Messages:
            return _regions(runtime, request, entity_id, await page.context(request), everything=True)

        async def render(batch: Sequence[Update]) -> Messages:
            mine = [u for u in batch if u.key == entity_id or (u.topic == "alerts" and _alert_of(u, entity_id))]
            topics = {u.topic for u in mine}
            view = page.view()
            ctx: dict[str, Any] = {"card": entity_card(view), "view": view}
            if "state" in topics:
                ctx.update(await page.state_context(request))
            if "commands" in topics:
                ctx.update(await page.commands_context())
            if "detections" in topics:
                ctx.update(await page.detections_context())
            if "alerts" in topics:
                ctx.update(await page.alerts_context())
            return _regions(runtime, request, entity_id, ctx, topics=topics) if topics else []

        return page_stream(
            request, runtime, {"state", "commands", "detections", "alerts"}, resync, render, keys={entity_id}
        )

    @post("/entities/{entity_id:str}/commands")
    async def send_command(
        self, request: Req, entity_id: IdPath, runtime: NamedDependency[Runtime]
    ) -> Template | Redirect:
        """Send a command from the form; HTMX gets the form back (the command list follows the stream), plain forms a
        redirect."""
        org_id = await _visible_entity(request, runtime, entity_id)
        actor = await authorize(request, org_id, "commands")
        flash, error = "", ""
        try:
            form = await read_form(request, CommandForm)
            if confirmation_missing(form.command, form.confirm):
                raise Invalid(f"{form.command} needs a confirmation: hold Send (or tick Confirm) to send it")
            sent = await runtime.services.commands.send(org_id, entity_id, form.to_command(), actor)
            flash = f"{sent.command} {sent.status}"
        except (AppError, ValueError) as exc:
            error = getattr(exc, "detail", None) or f"invalid value: {exc}"
        if not getattr(request, "htmx", False):
            return Redirect(f"/entities/{entity_id}", status_code=303)
        page = EntityPageData(runtime, entity_id)
        ctx = await page.state_context(request)
        return Template(
            "partials/command-form.html",
            context={**ctx, "flash": flash, "error": error},
            status_code=422 if error else 200,
        )

    @post("/entities/{entity_id:str}/embed")
    async def toggle_embed(self, request: Req, entity_id: IdPath, runtime: NamedDependency[Runtime]) -> Redirect:
        """Make this entity's embed public or private (admins only; audited)."""
        org_id = await _visible_entity(request, runtime, entity_id)
        actor = await authorize(request, org_id, "admin")
        form = await request.form()
        public = form.get("public") == "on"
        if await embeds_db.set_public(runtime.db, "entity", entity_id, public, actor.label, utc_now()):
            await runtime.services.audit.record(
                actor, "embed.public" if public else "embed.private", target=f"entity:{entity_id}", org_id=org_id
            )
        return Redirect(f"/entities/{entity_id}", status_code=303)


def _alert_of(update: Update, entity_id: str) -> bool:
    return getattr(update.payload, "entity_id", None) == entity_id


def _regions(
    runtime: Runtime,
    request: Req,
    entity_id: str,
    ctx: dict[str, Any],
    *,
    everything: bool = False,
    topics: set[str] | None = None,
) -> Messages:
    topics = topics or set()
    out: Messages = []
    if everything or "state" in topics:
        for name in (
            "entity-header",
            "entity-readiness",
            "entity-telemetry",
            "entity-attitude",
            "video-overlay",
            "tracked-objects",
            "entity-sparklines",
        ):
            out.append(event(runtime, request, name, ctx, key=entity_id))
    if everything or "commands" in topics:
        out.append(event(runtime, request, "command-list", ctx, key=entity_id))
    if everything or "detections" in topics:
        out.append(event(runtime, request, "detection-events", ctx, key=entity_id))
    if everything or "alerts" in topics:
        out.append(event(runtime, request, "entity-alerts", ctx, key=entity_id))
    return out
