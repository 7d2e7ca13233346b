"""What the fleet page, its group commands and the fleet embed read and change, behind one service."""

from __future__ import annotations

import msgspec

from core.errors import NotFound
from services.audit import Actor
from services.commands import CommandService
from services.console.cards import EntityCard
from services.console.figures import ConsoleData
from services.embeds import EmbedService
from services.registry import RegistryService
from services.schemas import CommandCreate, CommandView

EMBED_ORGS = 500  # organisations listed with their fleet embed switch


class FleetEmbed(msgspec.Struct, frozen=True):
    """One organisation's fleet embed and whether it is public."""

    org_id: str
    name: str
    public: bool


class FleetPage:
    """The fleet table's rows, the organisations' embed switches and commands to a selection."""

    def __init__(
        self, console: ConsoleData, registry: RegistryService, embeds: EmbedService, commands: CommandService
    ) -> None:
        self.console = console
        self.registry = registry
        self.embeds = embeds
        self.commands = commands

    def cards(self, org_ids: list[str] | None) -> list[EntityCard]:
        """Cards of every visible entity, by name."""
        return self.console.cards(org_ids)

    def card(self, entity_id: str) -> EntityCard | None:
        """One entity's card (``None`` without state)."""
        return self.console.card(entity_id)

    async def embed_settings(self, org_ids: list[str] | None) -> list[FleetEmbed]:
        """The visible organisations and whether their fleet embed is public."""
        public = await self.embeds.public_fleets()
        page = await self.registry.list_orgs(EMBED_ORGS, 0, org_ids)
        return [FleetEmbed(o.org_id, o.name, o.org_id in public) for o in page.items]

    async def embed_public(self, org_id: str) -> bool:
        """Whether the organisation's fleet embed is public."""
        return await self.embeds.is_public("fleet", org_id)

    async def set_embed_public(self, actor: Actor, org_id: str, public: bool) -> bool:
        """Make the organisation's fleet embed public or private (``NotFound`` for an unknown organisation)."""
        await self.registry.get_org(org_id)
        return await self.embeds.set_public(actor, "fleet", org_id, org_id, public)

    async def org_of(self, entity_id: str) -> str | None:
        """The registry's organisation of an entity (``None``: not registered)."""
        try:
            return (await self.registry.get_entity(None, entity_id)).org_id
        except NotFound:
            return None

    async def send(self, org_id: str, entity_id: str, command: str, actor: Actor) -> CommandView:
        """Send one parameterless command to one vehicle (checked, recorded and audited)."""
        return await self.commands.send(org_id, entity_id, CommandCreate(command=command), actor)
