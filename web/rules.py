"""``/alerts/rules``: rules (admins edit), recent firings (operators acknowledge and snooze).

Viewers get the same page without controls; calling a control directly is a 403
(audited by the guard layer).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Redirect, ServerSentEvent, Template

from core.errors import AppError, NotFound
from core.topics import Topic
from db.rules import RuleEventRow, RuleRow
from services.alerts.model import KINDS, THREAT_LEVELS, RuleForm, describe, validate
from services.alerts.service import RuleService
from services.auth.principal import Principal
from services.hub import Update
from web.admin.forms import read_form
from web.auth.guards import authorize, deny, principal_of, requires
from web.sse.live import LiveStreams, Messages

Req = Request[Any, Any, Any]
SEVERITIES = ("info", "warning", "elevated", "high", "critical")


class SnoozeForm(msgspec.Struct, kw_only=True):
    """Snooze a rule for ``minutes`` (0 ends the snooze)."""

    minutes: float


class RuleView(msgspec.Struct, frozen=True, kw_only=True):
    """A rule as the list shows it."""

    row: RuleRow
    condition: str
    firing: int
    snoozed_minutes: int
    can_edit: bool
    can_snooze: bool
    default: bool  # a default rule (the built-in offline, battery or threat alert): disabled, never deleted


def _visible(principal: Principal, org_id: str) -> bool:
    # System-wide rules and events (no organisation) are for callers who see every organisation.
    return principal.sees(org_id) if org_id else principal.org_ids is None


def _manages(principal: Principal, org_id: str) -> bool:
    return principal.can_in("admin", org_id) if org_id else principal.is_global_admin


async def _context(rules_service: RuleService, principal: Principal) -> dict[str, Any]:
    now = time.time()
    rules = [r for r in await rules_service.list_rules() if _visible(principal, r.org_id)]
    firing = await rules_service.firing_counts()
    views = [
        RuleView(
            row=r,
            condition=describe(r.kind, r.threshold),
            firing=firing.get(r.rule_id, 0),
            snoozed_minutes=max(1, round((r.snoozed_until - now) / 60))
            if r.snoozed_until and r.snoozed_until > now
            else 0,
            can_edit=_manages(principal, r.org_id),
            can_snooze=principal.can("commands") and _visible(principal, r.org_id),
            default=bool(r.builtin),
        )
        for r in rules
    ]
    events = await rules_service.recent_events(principal.visible_orgs, limit=50)
    if principal.org_ids is not None:
        events = [e for e in events if e.org_id]
    return {
        "rules": views,
        "events": events,
        "can_create": principal.can("admin"),
        "can_ack": principal.can("commands"),
    }


def _form_context(rule: RuleRow | None = None, error: str = "") -> dict[str, Any]:
    return {
        "rule": rule,
        "kinds": list(KINDS.values()),
        "severities": SEVERITIES,
        "threat_levels": THREAT_LEVELS,
        "error": error,
    }


class RulesController(Controller):
    """The rules page, its stream, and the rule/ack/snooze actions."""

    include_in_schema = False
    guards = [requires("read")]

    async def _page(self, request: Req, rules: RuleService, error: str = "", status: int = 200) -> Template:
        ctx = await _context(rules, principal_of(request))
        return Template(
            "pages/rules.html", context={**ctx, **_form_context(error=error), "active": "alerts"}, status_code=status
        )

    @get("/alerts/rules")
    async def rules(self, request: Req, rules: NamedDependency[RuleService]) -> Template:
        """Every visible rule and the latest firings."""
        return await self._page(request, rules)

    @get("/events/rules")
    async def rules_events(
        self, request: Req, rules: NamedDependency[RuleService], live: NamedDependency[LiveStreams]
    ) -> ServerSentEvent:
        """The rule list and the firings, re-rendered when rules fire, resolve or change."""
        principal = principal_of(request)

        async def resync() -> Messages:
            ctx = await _context(rules, principal)
            return [live.event(request, "rule-list", ctx), live.event(request, "rule-events", ctx)]

        async def render(_batch: Sequence[Update]) -> Messages:
            return await resync()

        return live.page_stream(request, {Topic.RULES}, resync, render, max_fps=2.0)

    @post("/alerts/rules")
    async def create_rule(self, request: Req, rules: NamedDependency[RuleService]) -> Template | Redirect:
        """Add a rule (admins; audited)."""
        actor = await authorize(request, None, "admin")
        try:
            spec = validate(await read_form(request, RuleForm))
            if not _manages(principal_of(request), spec.org_id):
                await deny(request, principal_of(request), "needs admin permission over the rule's scope", spec.org_id)
            await rules.create(actor, spec)
        except AppError as exc:
            return await self._page(request, rules, error=exc.detail, status=exc.status_code)
        return Redirect("/alerts/rules", status_code=303)

    @get("/alerts/rules/{rule_id:str}")
    async def rule(self, request: Req, rule_id: FromPath[str], rules: NamedDependency[RuleService]) -> Template:
        """One rule's edit form (admins)."""
        row = await self._managed(request, rules, rule_id)
        return Template("pages/rule.html", context={**_form_context(row), "active": "alerts"})

    @post("/alerts/rules/{rule_id:str}")
    async def update_rule(
        self, request: Req, rule_id: FromPath[str], rules: NamedDependency[RuleService]
    ) -> Template | Redirect:
        """Change a rule (admins; audited with the diff)."""
        row = await self._managed(request, rules, rule_id)
        actor = await authorize(request, None, "admin")
        try:
            spec = validate(await read_form(request, RuleForm))
            if not _manages(principal_of(request), spec.org_id):
                await deny(request, principal_of(request), "needs admin permission over the rule's scope", spec.org_id)
            await rules.update(actor, rule_id, spec)
        except AppError as exc:
            return Template(
                "pages/rule.html",
                context={**_form_context(row, exc.detail), "active": "alerts"},
                status_code=exc.status_code,
            )
        return Redirect("/alerts/rules", status_code=303)

    @post("/alerts/rules/{rule_id:str}/delete")
    async def delete_rule(self, request: Req, rule_id: FromPath[str], rules: NamedDependency[RuleService]) -> Redirect:
        """Delete a rule (admins; audited); a default rule is disabled instead (422)."""
        await self._managed(request, rules, rule_id)
        actor = await authorize(request, None, "admin")
        await rules.delete(actor, rule_id)
        return Redirect("/alerts/rules", status_code=303)

    @post("/alerts/rules/{rule_id:str}/snooze")
    async def snooze_rule(self, request: Req, rule_id: FromPath[str], rules: NamedDependency[RuleService]) -> Redirect:
        """Silence new firings for N minutes (operators and admins; audited)."""
        row = await rules.find(rule_id)
        principal = principal_of(request)
        if row is None or not _visible(principal, row.org_id):
            raise NotFound(f"rule {rule_id} not found")
        actor = await authorize(request, row.org_id or None, "commands")
        form = await read_form(request, SnoozeForm)
        await rules.snooze(actor, rule_id, form.minutes)
        return Redirect("/alerts/rules", status_code=303)

    @post("/alerts/rules/events/{event_id:str}/ack")
    async def acknowledge(self, request: Req, event_id: FromPath[str], rules: NamedDependency[RuleService]) -> Redirect:
        """Acknowledge a firing and its alert (operators and admins; audited): ``AlertService.acknowledge``."""
        row: RuleEventRow | None = await rules.get_event(event_id)
        if row is None or not _visible(principal_of(request), row.org_id):
            raise NotFound(f"rule event {event_id} not found")
        actor = await authorize(request, row.org_id or None, "commands")
        await rules.acknowledge(actor, row)
        return Redirect("/alerts/rules", status_code=303)

    async def _managed(self, request: Req, rules: RuleService, rule_id: str) -> RuleRow:
        """The rule, after checking the caller may manage it (403 audited, 404 if invisible)."""
        principal = principal_of(request)
        row = await rules.find(rule_id)
        if row is None or not _visible(principal, row.org_id):
            if not principal.can("admin"):
                await deny(request, principal, "needs admin permission")
            raise NotFound(f"rule {rule_id} not found")
        if not _manages(principal, row.org_id):
            await deny(request, principal, "needs admin permission over the rule's scope", row.org_id)
        return row
