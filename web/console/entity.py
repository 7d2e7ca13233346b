"""The entity detail page: telemetry, attitude, sparklines, commands, detections, alerts, video."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.response import Redirect, ServerSentEvent, Template

from core.errors import AppError, Invalid
from core.topics import Topic
from services.console.cards import entity_card, tracked_objects
from services.console.entity_page import EntityPage
from services.hub import Update
from services.schemas import CommandCreate
from web.admin.forms import read_form
from web.api.params import IdPath
from web.api.views import alert_view, detection_view
from web.auth.guards import authorize, principal_of, requires
from web.console.safety import CONFIRM_COMMANDS, confirmation_missing
from web.sse.live import LiveStreams, Messages

Req = Request[Any, Any, Any]
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
    """Builds the template contexts of one entity's page regions."""

    def __init__(self, page: EntityPage, entity_id: str) -> None:
        self.page = page
        self.entity_id = entity_id

    async def state_context(self, request: Req) -> dict[str, Any]:
        """Regions fed by the state cache (no database query except the cached sparklines)."""
        doc = self.page.doc(self.entity_id)
        view = self.page.view(self.entity_id)
        battery, altitude = await self.page.sparklines(self.entity_id)
        principal = principal_of(request)
        return {
            "card": entity_card(view),
            "view": doc,
            "objects": tracked_objects(view),
            "battery_line": battery,
            "altitude_line": altitude,
            "video": self.page.video_source(self.entity_id),
            "can_command": principal.can_in("commands", str(doc.get("org_id") or "")),
            "is_admin": principal.can_in("admin", str(doc.get("org_id") or "")),
            "command_names": COMMANDS,
            "confirm_commands": CONFIRM_COMMANDS,
            "readiness": self.page.readiness(doc),
            "flash": "",
            "error": "",
        }

    async def commands_context(self) -> dict[str, Any]:
        """The command list."""
        return {"commands": await self.page.recent_commands(self.entity_id)}

    async def detections_context(self) -> dict[str, Any]:
        """Recent detection events."""
        return {"detections": [detection_view(r) for r in await self.page.recent_detections(self.entity_id)]}

    async def alerts_context(self) -> dict[str, Any]:
        """This entity's alerts."""
        return {"alerts": [alert_view(r) for r in await self.page.recent_alerts(self.entity_id)]}

    async def context(self, request: Req) -> dict[str, Any]:
        """Every region's context (first render and resync)."""
        return {
            **await self.state_context(request),
            **await self.commands_context(),
            **await self.detections_context(),
            **await self.alerts_context(),
            "record": await self.page.record(self.entity_id),
            "embed_public": await self.page.embed_public(self.entity_id),
        }


async def _visible_entity(request: Req, page: EntityPage, entity_id: str) -> str:
    org_id = await page.org_of(entity_id)
    await authorize(request, org_id, "read")
    return org_id


class EntityController(Controller):
    """``/entities/{entity_id}`` and its stream and forms."""

    include_in_schema = False
    guards = [requires("read")]

    @get("/entities/{entity_id:str}")
    async def entity(self, request: Req, entity_id: IdPath, entity_page: NamedDependency[EntityPage]) -> Template:
        """The detail page."""
        await _visible_entity(request, entity_page, entity_id)
        ctx = await EntityPageData(entity_page, entity_id).context(request)
        return Template("pages/entity.html", context={**ctx, "active": "fleet"})

    @get("/events/entity/{entity_id:str}")
    async def entity_events(
        self,
        request: Req,
        entity_id: IdPath,
        entity_page: NamedDependency[EntityPage],
        live: NamedDependency[LiveStreams],
    ) -> ServerSentEvent:
        """Live regions of one entity."""
        await _visible_entity(request, entity_page, entity_id)
        page = EntityPageData(entity_page, entity_id)

        async def resync() -> Messages:
            return _regions(live, request, entity_id, await page.context(request), everything=True)

        async def render(batch: Sequence[Update]) -> Messages:
            mine = [u for u in batch if u.key == entity_id or (u.topic == Topic.ALERTS and _alert_of(u, entity_id))]
            topics = {u.topic for u in mine}
            ctx: dict[str, Any] = {
                "card": entity_card(entity_page.view(entity_id)),
                "view": entity_page.doc(entity_id),
            }
            if Topic.STATE in topics:
                ctx.update(await page.state_context(request))
            if Topic.COMMANDS in topics:
                ctx.update(await page.commands_context())
            if Topic.DETECTIONS in topics:
                ctx.update(await page.detections_context())
            if Topic.ALERTS in topics:
                ctx.update(await page.alerts_context())
            return _regions(live, request, entity_id, ctx, topics=topics) if topics else []

        return live.page_stream(
            request, {"state", "commands", "detections", "alerts"}, resync, render, keys={entity_id}
        )

    @post("/entities/{entity_id:str}/commands")
    async def send_command(
        self, request: Req, entity_id: IdPath, entity_page: NamedDependency[EntityPage]
    ) -> Template | Redirect:
        """Send a command from the form; HTMX gets the form back (the command list follows the stream), plain forms a
        redirect."""
        org_id = await _visible_entity(request, entity_page, entity_id)
        actor = await authorize(request, org_id, "commands")
        flash, error = "", ""
        try:
            form = await read_form(request, CommandForm)
            if confirmation_missing(form.command, form.confirm):
                raise Invalid(f"{form.command} needs a confirmation: hold Send (or tick Confirm) to send it")
            sent = await entity_page.send_command(org_id, entity_id, form.to_command(), actor)
            flash = f"{sent.command} {sent.status}"
        except (AppError, ValueError) as exc:
            error = getattr(exc, "detail", None) or f"invalid value: {exc}"
        if not getattr(request, "htmx", False):
            return Redirect(f"/entities/{entity_id}", status_code=303)
        ctx = await EntityPageData(entity_page, entity_id).state_context(request)
        return Template(
            "partials/command-form.html",
            context={**ctx, "flash": flash, "error": error},
            status_code=422 if error else 200,
        )

    @post("/entities/{entity_id:str}/embed")
    async def toggle_embed(self, request: Req, entity_id: IdPath, entity_page: NamedDependency[EntityPage]) -> Redirect:
        """Make this entity's embed public or private (admins only; audited)."""
        org_id = await _visible_entity(request, entity_page, entity_id)
        actor = await authorize(request, org_id, "admin")
        form = await request.form()
        await entity_page.set_embed_public(actor, org_id, entity_id, form.get("public") == "on")
        return Redirect(f"/entities/{entity_id}", status_code=303)


def _alert_of(update: Update, entity_id: str) -> bool:
    return getattr(update.payload, "entity_id", None) == entity_id


def _regions(
    live: LiveStreams,
    request: Req,
    entity_id: str,
    ctx: dict[str, Any],
    *,
    everything: bool = False,
    topics: set[str] | None = None,
) -> Messages:
    topics = topics or set()
    out: Messages = []
    if everything or Topic.STATE in topics:
        for name in (
            "entity-header",
            "entity-readiness",
            "entity-telemetry",
            "entity-attitude",
            "video-overlay",
            "tracked-objects",
            "entity-sparklines",
        ):
            out.append(live.event(request, name, ctx, key=entity_id))
    if everything or Topic.COMMANDS in topics:
        out.append(live.event(request, "command-list", ctx, key=entity_id))
    if everything or Topic.DETECTIONS in topics:
        out.append(live.event(request, "detection-events", ctx, key=entity_id))
    if everything or Topic.ALERTS in topics:
        out.append(live.event(request, "entity-alerts", ctx, key=entity_id))
    return out
