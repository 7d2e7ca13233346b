"""The dead-letter pages: list (newest first, paged), one message, replay and discard.

Everyone signed in may read the dead letters of organisations they see. Replaying is
for operators and admins of the message's organisation; discarding is for its admins,
after a confirmation page. Every replay and discard is audited, one entry per message.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import PathParameter, QueryParameter
from litestar.response import Redirect, Template

from core.errors import Invalid, NotFound
from services.audit import Actor
from services.auth.principal import Principal
from services.nats_console.dlq import DeadLetter, DlqService
from web.auth.guards import authorize, deny, origin_of, principal_of, requires

Req = Request[Any, Any, Any]
SeqPath = Annotated[int, PathParameter(ge=1, le=2**63 - 1)]
BeforeQuery = Annotated[int, QueryParameter(ge=0, le=2**63 - 1)]
CountQuery = Annotated[int, QueryParameter(ge=0, le=10_000)]
MAX_BATCH = 100  # messages replayed or discarded per request


def _ctx(**values: Any) -> dict[str, Any]:
    return {"active": "nats", "tab": "dlq", **values}


def _sees(principal: Principal, item: DeadLetter) -> bool:
    # Dead letters without an organisation (e.g. video frames) are for callers who see all.
    return principal.org_ids is None or (item.org_id is not None and principal.sees(item.org_id))


def _can(principal: Principal, permission: str, item: DeadLetter) -> bool:
    if item.org_id is None:
        return principal.can(permission) and principal.org_ids is None
    return principal.can_in(permission, item.org_id)


async def _actor_for(request: Req, item: DeadLetter, permission: str) -> Actor:
    """Permission in the message's organisation (every organisation when it has none)."""
    if item.org_id is not None:
        return await authorize(request, item.org_id, permission)
    principal = principal_of(request)
    if not (principal.can(permission) and principal.org_ids is None):
        await deny(
            request, principal, f"dead letter {item.seq} belongs to no organisation: needs {permission} everywhere"
        )
    return Actor(principal, origin_of(request))


def _seqs(values: list[str]) -> list[int]:
    seqs: list[int] = []
    for value in values:
        if not value.isdigit() or int(value) < 1:
            raise Invalid(f"invalid sequence {value!r}")
        seqs.append(int(value))
    if not seqs:
        raise Invalid("select at least one message")
    if len(seqs) > MAX_BATCH:
        raise Invalid(f"at most {MAX_BATCH} messages at a time")
    return sorted(set(seqs))


async def _load(request: Req, dlq: DlqService, seqs: list[int]) -> list[DeadLetter]:
    """The selected dead letters the caller sees (``NotFound`` if one is gone or hidden)."""
    principal = principal_of(request)
    items = []
    for seq in seqs:
        item = await dlq.get(seq)
        if item is None or not _sees(principal, item):
            raise NotFound(f"dead letter {seq} not found (already replayed or discarded?)")
        items.append(item)
    return items


class DlqController(Controller):
    """``/nats/dlq``: dead letters, replay (operator+) and discard (admin)."""

    include_in_schema = False
    guards = [requires("read")]

    @get("/nats/dlq")
    async def dead_letters(
        self,
        request: Req,
        nats_dlq: NamedDependency[DlqService],
        before: BeforeQuery = 0,
        replayed: CountQuery = 0,
        discarded: CountQuery = 0,
        failed: CountQuery = 0,
    ) -> Template:
        """Dead letters newest first with reason and original subject; older pages by ``before``."""
        principal = principal_of(request)
        page = await nats_dlq.page(before or None, lambda item: _sees(principal, item))
        rows = [(item, _can(principal, "commands", item), _can(principal, "admin", item)) for item in page.items]
        # Dead letters refused since start because an organisation's quota was full (only orgs the caller sees).
        refused = sorted(
            (org or "(no organisation)", n)
            for org, n in nats_dlq.refused().items()
            if n and (principal.org_ids is None or (org and principal.sees(org)))
        )
        return Template(
            "pages/nats-dlq.html",
            context=_ctx(
                page=page,
                rows=rows,
                refused=refused,
                quota=nats_dlq.quota,
                before=before,
                can_replay=any(r[1] for r in rows),
                can_discard=any(r[2] for r in rows),
                done={"replayed": replayed, "discarded": discarded, "failed": failed},
            ),
        )

    @get("/nats/dlq/{seq:int}")
    async def dead_letter(self, request: Req, seq: SeqPath, nats_dlq: NamedDependency[DlqService]) -> Template:
        """One dead letter: why, where from, headers and payload."""
        principal = principal_of(request)
        item = await nats_dlq.get(seq)
        if item is None or not _sees(principal, item):
            raise NotFound(f"dead letter {seq} not found (already replayed or discarded?)")
        return Template(
            "pages/nats-dlq-message.html",
            context=_ctx(
                m=item, can_replay=_can(principal, "commands", item), can_discard=_can(principal, "admin", item)
            ),
        )

    @post("/nats/dlq/replay", guards=[requires("commands")])
    async def replay(self, request: Req, nats_dlq: NamedDependency[DlqService]) -> Redirect:
        """Replay the selected messages to their original subjects (operators+ of their organisations)."""
        form = await request.form()
        items = await _load(request, nats_dlq, _seqs(form.getall("seq") if "seq" in form else []))
        actors = [await _actor_for(request, item, "commands") for item in items]  # all allowed, or nothing is done
        replayed, failed = await nats_dlq.replay_all(list(zip(items, actors, strict=True)))
        return Redirect("/nats/dlq?" + urlencode({"replayed": replayed, "failed": failed}), status_code=303)

    @post("/nats/dlq/discard", guards=[requires("admin")])
    async def discard(self, request: Req, nats_dlq: NamedDependency[DlqService]) -> Template | Redirect:
        """First submit: the confirmation page. Second (``confirm=yes``): delete for good and audit."""
        form = await request.form()
        items = await _load(request, nats_dlq, _seqs(form.getall("seq") if "seq" in form else []))
        actors = [await _actor_for(request, item, "admin") for item in items]  # all allowed, or nothing is done
        if form.get("confirm") != "yes":
            return Template("pages/nats-dlq-discard.html", context=_ctx(items=items))
        discarded = await nats_dlq.discard_all(list(zip(items, actors, strict=True)))
        return Redirect("/nats/dlq?" + urlencode({"discarded": discarded}), status_code=303)
