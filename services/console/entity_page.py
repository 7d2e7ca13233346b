"""What the entity page, its stream and the entity embed read and change, behind one service.

The page shows one entity from several owners: its state (state cache), battery and
altitude history (tracks), commands, detections, alerts, registry record, camera and
embed setting. Reads are plain data; the HTTP layer builds template contexts from them.
"""

from __future__ import annotations

import time
from typing import Any

from core.contracts.registry import EntityRecord
from core.errors import NotFound
from db.alerts import AlertRow
from db.commands import CommandRow
from db.detections import DetectionRow
from services.alerts.store import AlertService
from services.audit import Actor
from services.commands import CommandService
from services.console.charts import Sparkline, sparkline
from services.detections import DetectionService
from services.embeds import EmbedService
from services.mavlink.readiness import Readiness, readiness
from services.registry import RegistryService
from services.schemas import CommandCreate, CommandView
from services.state_cache import StateCache
from services.state_view import EntityView, entity_view
from services.tracks import TrackService
from services.video import VideoRegistry, VideoSource

SPARK_WINDOW = 15 * 60  # seconds of history in the sparklines
SPARK_TTL = 10.0  # seconds a computed pair of sparklines is reused
RECENT_COMMANDS = 15
RECENT_DETECTIONS = 20
RECENT_ALERTS = 10


class EntityPage:
    """One entity as the console shows it (callers check visibility first)."""

    def __init__(
        self,
        cache: StateCache,
        tracks: TrackService,
        detections: DetectionService,
        alerts: AlertService,
        commands: CommandService,
        registry: RegistryService,
        embeds: EmbedService,
        video: VideoRegistry,
        battery_alert_percent: float,
    ) -> None:
        self.cache = cache
        self.tracks = tracks
        self.detections = detections
        self.alerts = alerts
        self.commands = commands
        self.registry = registry
        self.embeds = embeds
        self.video = video
        self.battery_alert_percent = battery_alert_percent
        # entity id -> (monotonic time computed, (battery, altitude)): one track query per entity per SPARK_TTL
        self._sparks: dict[str, tuple[float, tuple[Sparkline, Sparkline]]] = {}

    # ------------------------------------------------------------ access
    async def org_of(self, entity_id: str) -> str:
        """The registry's organisation of the entity (``NotFound`` if it is not registered)."""
        return (await self.registry.get_entity(None, entity_id)).org_id

    async def embed_public(self, entity_id: str) -> bool:
        """Whether the entity's embed is public."""
        return await self.embeds.is_public("entity", entity_id)

    # ------------------------------------------------------------ state
    def doc(self, entity_id: str) -> dict[str, Any]:
        """The merged state document (empty until the entity has state, or while it is withheld).

        Its ``org_id`` is always the registry's, so the command and admin controls follow
        the entity's real organisation, never one a stored value names.
        """
        doc = self.cache.get(entity_id)
        return doc if doc is not None else {"entity_id": entity_id, "org_id": self.cache.org_of(entity_id) or ""}

    def view(self, entity_id: str) -> EntityView:
        """The typed view the cards and overlays read (an empty one until the entity has state)."""
        typed = self.cache.view(entity_id)
        return typed or entity_view(entity_id, str(self.doc(entity_id).get("org_id") or ""), {})

    def readiness(self, doc: dict[str, Any]) -> Readiness | None:
        """The MAVLink readiness verdict of a state document (``None``: not a MAVLink vehicle)."""
        return readiness(doc, self.battery_alert_percent)

    def video_source(self, entity_id: str) -> VideoSource | None:
        """The entity's camera, if it has one."""
        return self.video.source(entity_id)

    async def sparklines(self, entity_id: str) -> tuple[Sparkline, Sparkline]:
        """Battery and altitude history from the stored track."""
        hit = self._sparks.get(entity_id)
        if hit and time.monotonic() - hit[0] < SPARK_TTL:
            return hit[1]
        points = await self.tracks.history(entity_id, time.time() - SPARK_WINDOW, 500)
        lines = (
            sparkline([(p.ts, p.battery) for p in points], "Battery", "%", 0, 100),
            sparkline([(p.ts, p.altitude) for p in points], "Altitude", "m"),
        )
        self._sparks[entity_id] = (time.monotonic(), lines)
        return lines

    # ------------------------------------------------------------ history
    async def recent_commands(self, entity_id: str) -> list[CommandRow]:
        """The latest commands sent to the entity."""
        return await self.commands.recent(entity_id, RECENT_COMMANDS)

    async def recent_detections(self, entity_id: str) -> list[DetectionRow]:
        """The latest detection events of the entity."""
        return await self.detections.recent(entity_id, RECENT_DETECTIONS)

    async def recent_alerts(self, entity_id: str) -> list[AlertRow]:
        """The entity's latest alerts."""
        rows, _total = await self.alerts.of_entity(None, entity_id, limit=RECENT_ALERTS)
        return rows

    async def record(self, entity_id: str) -> EntityRecord | None:
        """The registry record (``None`` if the entity is gone)."""
        try:
            return await self.registry.get_entity(None, entity_id)
        except NotFound:
            return None

    # ------------------------------------------------------------ changes
    async def send_command(self, org_id: str, entity_id: str, body: CommandCreate, actor: Actor) -> CommandView:
        """Send a command (checked, recorded and audited by the command service)."""
        return await self.commands.send(org_id, entity_id, body, actor)

    async def set_embed_public(self, actor: Actor, org_id: str, entity_id: str, public: bool) -> bool:
        """Make the entity's embed public or private (audited when it changed)."""
        return await self.embeds.set_public(actor, "entity", entity_id, org_id, public)
