"""The fleet page: a sortable, filterable table with a live row per entity; and the nav stream."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.exceptions import PermissionDeniedException
from litestar.params import QueryParameter
from litestar.response import Redirect, ServerSentEvent, Template

from core.errors import AppError
from core.topics import Topic
from services.console.cards import EntityCard, sort_cards
from services.console.fleet import FleetPage
from services.hub import Update
from services.mavlink.readiness import VERDICTS
from web.admin.forms import read_form
from web.api.params import IdPath
from web.auth.guards import authorize, principal_of, requires
from web.console.safety import CONFIRM_COMMANDS, confirmation_missing
from web.sse.live import LiveStreams, Messages, context_of

Req = Request[Any, Any, Any]
SORTABLE = (
    "name",
    "entity_type",
    "status",
    "is_live",
    "battery",
    "speed",
    "alt",
    "last_seen_ms",
    "org_id",
    "active_objects",
    "readiness",
)
Sort = Annotated[str, QueryParameter(pattern="^-?(" + "|".join(SORTABLE) + ")$")]
Filter = Annotated[str, QueryParameter(max_length=100)]
Show = Annotated[str, QueryParameter(pattern="^(|live|offline|threat|" + "|".join(VERDICTS) + ")$")]
GROUP_COMMANDS = ("rtl", "hold", "resume", "land")  # what the fleet table can send to a selection
MAX_GROUP = 100  # vehicles per group command


class FleetQuery(msgspec.Struct, frozen=True):
    """Sorting and filtering of the fleet table (kept in the URL)."""

    sort: str = "name"
    q: str = ""
    state: str = ""

    @property
    def key(self) -> str:
        """The column sorted by."""
        return self.sort.lstrip("-")

    @property
    def descending(self) -> bool:
        """Sort order."""
        return self.sort.startswith("-")

    def toggled(self, column: str) -> str:
        """The ``sort`` value a header link should carry."""
        return f"-{column}" if self.key == column and not self.descending else column

    def matches(self, card: EntityCard) -> bool:
        """Whether a row passes the filter."""
        text = self.q.lower()
        if text and text not in f"{card.name} {card.entity_id} {card.entity_type} {card.mode} {card.org_id}".lower():
            return False
        if self.state == "live" and not card.is_live:
            return False
        if self.state == "offline" and card.is_live:
            return False
        if self.state in VERDICTS and card.readiness != self.state:
            return False
        return not (self.state == "threat" and card.marker_state not in ("threat", "elevated"))


def fleet_rows(fleet: FleetPage, org_ids: list[str] | None, query: FleetQuery) -> list[EntityCard]:
    """Visible rows, filtered and sorted."""
    cards = [c for c in fleet.cards(org_ids) if query.matches(c)]
    return sort_cards(cards, query.key, query.descending)


class GroupCommandForm(msgspec.Struct, kw_only=True):
    """The fleet table's group command: a command and the selected rows."""

    command: str
    entity_id: list[str] = msgspec.field(default_factory=list)
    confirm: str = ""


class GroupResult(msgspec.Struct, frozen=True):
    """What happened to one vehicle of a group command."""

    entity_id: str
    command_id: str
    status: str
    error: str = ""


async def _send_one(request: Req, fleet: FleetPage, entity_id: str, command: str) -> GroupResult:
    """One vehicle of a group command, checked and audited like a single command."""
    org_id = await fleet.org_of(entity_id)
    if org_id is None or not principal_of(request).sees(org_id):
        return GroupResult(entity_id, "", "failed", "not found")
    try:
        actor = await authorize(request, org_id, "commands")
        sent = await fleet.send(org_id, entity_id, command, actor)
    except AppError as exc:
        return GroupResult(entity_id, "", "failed", exc.detail)
    except PermissionDeniedException as exc:
        return GroupResult(entity_id, "", "failed", str(exc.detail))
    return GroupResult(entity_id, sent.command_id, sent.status)


class FleetController(Controller):
    """``/fleet`` and its stream; ``/events/nav`` for pages without their own regions."""

    include_in_schema = False
    guards = [requires("read")]

    @get("/fleet")
    async def fleet(
        self, request: Req, fleet: NamedDependency[FleetPage], sort: Sort = "name", q: Filter = "", show: Show = ""
    ) -> Template:
        """The fleet table (filters live in the URL, so the stream follows them)."""
        query = FleetQuery(sort, q, show)
        principal = principal_of(request)
        context = {
            "rows": fleet_rows(fleet, principal.visible_orgs, query),
            "query": query,
            "active": "fleet",
            "embeds": await fleet.embed_settings(principal.visible_orgs) if principal.can("admin") else [],
            "can_command": principal.can("commands"),
            "group_commands": GROUP_COMMANDS,
            "confirm_commands": CONFIRM_COMMANDS,
        }
        return Template("pages/fleet.html", context=context)

    @post("/fleet/embed/{org_id:str}")
    async def toggle_embed(self, request: Req, org_id: IdPath, fleet: NamedDependency[FleetPage]) -> Redirect:
        """Make an organisation's fleet embed public or private (its admins only; audited)."""
        actor = await authorize(request, org_id, "admin")
        form = await request.form()
        await fleet.set_embed_public(actor, org_id, form.get("public") == "on")
        return Redirect("/fleet", status_code=303)

    @post("/fleet/commands", guards=[requires("commands")])
    async def group_command(self, request: Req, fleet: NamedDependency[FleetPage]) -> Template | Redirect:
        """Send one command to every selected vehicle: one command, one audit entry and one result each."""
        form = await read_form(request, GroupCommandForm, lists=("entity_id",))
        results: list[GroupResult] = []
        error = ""
        if form.command not in GROUP_COMMANDS:
            error = f"{form.command!r} cannot be sent to a selection (choose {', '.join(GROUP_COMMANDS)})"
        elif not form.entity_id:
            error = "select at least one vehicle in the table"
        elif len(form.entity_id) > MAX_GROUP:
            error = f"at most {MAX_GROUP} vehicles at once"
        elif confirmation_missing(form.command, form.confirm):
            error = f"{form.command} needs a confirmation: hold the button (or tick Confirm) to send it"
        else:
            for entity_id in dict.fromkeys(form.entity_id):
                results.append(await _send_one(request, fleet, entity_id, form.command))
        if not getattr(request, "htmx", False):
            return Redirect("/fleet", status_code=303)
        context = {"results": results, "error": error, "command": form.command}
        return Template("partials/group-command-result.html", context=context, status_code=422 if error else 200)

    @get("/events/fleet")
    async def fleet_events(
        self,
        request: Req,
        fleet: NamedDependency[FleetPage],
        live: NamedDependency[LiveStreams],
        sort: Sort = "name",
        q: Filter = "",
        show: Show = "",
    ) -> ServerSentEvent:
        """Live rows; the whole table again when entities are added or removed."""
        query = FleetQuery(sort, q, show)
        principal = principal_of(request)

        async def resync() -> Messages:
            rows = fleet_rows(fleet, principal.visible_orgs, query)
            context = {"rows": rows, "query": query, "can_command": principal.can("commands")}
            return [live.event(request, "fleet-table", context)]

        async def render(batch: Sequence[Update]) -> Messages:
            if any(u.topic == Topic.REGISTRY for u in batch):
                return await resync()
            out: Messages = []
            for update in batch:
                card = fleet.card(update.key)
                if card is not None and principal.sees(card.org_id) and query.matches(card):
                    out.append(live.cached_event("fleet-row", card.entity_id, context_of(card=card)))
            return out

        return live.page_stream(request, {Topic.STATE, Topic.REGISTRY}, resync, render)

    @get("/events/nav")
    async def nav_events(self, request: Req, live: NamedDependency[LiveStreams]) -> ServerSentEvent:
        """Only the navigation's alert badge (pages without live regions of their own)."""

        async def nothing() -> Messages:
            return []

        async def none(_batch: Sequence[Update]) -> Messages:
            return []

        return live.page_stream(request, set(), nothing, none, max_fps=2.0)
