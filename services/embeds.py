"""Public embeds: which entity and fleet widgets anyone may see without signing in."""

from __future__ import annotations

from typing import Literal

from core.contracts.common import utc_now
from db import embeds as embeds_db
from db.database import Database
from services.audit import Actor, AuditService

EmbedKind = Literal["entity", "fleet"]  # an entity id, or an organisation id for its fleet table


class EmbedService:
    """Reads and sets whether an embed is public; every change is audited."""

    def __init__(self, db: Database, audit: AuditService) -> None:
        self.db = db
        self.audit = audit

    async def is_public(self, kind: EmbedKind, target: str) -> bool:
        """Whether the embed of ``target`` is public."""
        return await embeds_db.is_public(self.db, kind, target)

    async def public_fleets(self) -> set[str]:
        """Organisations whose fleet embed is public."""
        return {target for kind, target in await embeds_db.list_public(self.db) if kind == "fleet"}

    async def set_public(self, actor: Actor, kind: EmbedKind, target: str, org_id: str, public: bool) -> bool:
        """Make an embed public or private; True (and an audit entry) when that changed it."""
        changed = await embeds_db.set_public(self.db, kind, target, public, actor.label, utc_now())
        if changed:
            await self.audit.record(
                actor, "embed.public" if public else "embed.private", target=f"{kind}:{target}", org_id=org_id
            )
        return changed
