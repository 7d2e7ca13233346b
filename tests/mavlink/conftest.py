"""MAVLink fixtures: the real bridge on 127.0.0.1 UDP, emulated vehicles, a real runtime and nats-server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from app.runtime import Runtime
from core.settings import Settings
from services.mavlink.bridge import Bridge
from services.mavlink.config import LinkSpec, MavlinkSettings
from services.mavlink.emulator import Emulator
from services.schemas import OrgCreate
from tests.browser.conftest import browser  # noqa: F401 - the Chromium fixture, for test_browser.py

ORG = "org1"
FAST = {"command_timeout": 0.3, "command_retries": 2, "progress_timeout": 10.0}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The server's telemetry limit above the emulator's 10 Hz position rate, so every position is applied."""
    return msgspec.structs.replace(settings, telemetry_max_hz=25.0)


@pytest.fixture
async def make_bridge(runtime: Runtime) -> AsyncIterator[Any]:
    """Factory: a started bridge on the runtime's NATS connection, listening on a free 127.0.0.1 UDP port."""
    await runtime.services.registry.create_org(OrgCreate(org_id=ORG, name="MAVLink org", org_type="military"))
    started: list[Bridge] = []

    async def make(links: int = 1, mapping: Any = None, **overrides: Any) -> Bridge:
        settings = msgspec.structs.replace(MavlinkSettings(org_id=ORG, listen="", **FAST), **overrides)
        assert runtime.nc is not None
        bridge = Bridge(settings, runtime.nc, mapping=mapping, links=[LinkSpec("udp-listen", "127.0.0.1", 0)] * links)
        await bridge.start()
        started.append(bridge)
        return bridge

    yield make
    for bridge in reversed(started):
        await bridge.stop()


@pytest.fixture
async def make_vehicle() -> AsyncIterator[Any]:
    """Factory: a started emulated vehicle aimed at a bridge's UDP port."""
    started: list[Emulator] = []

    async def make(bridge: Bridge, link: int = 0, **kwargs: Any) -> Emulator:
        emulator = Emulator(bridge.udp_address(link), **kwargs)
        await emulator.start()
        started.append(emulator)
        return emulator

    yield make
    for emulator in reversed(started):
        await emulator.stop()
