"""The demo: entities update several times per second, go offline when stopped, come back."""

from __future__ import annotations

import time
from typing import Any

from app.demo import DEMO_FLEET, seed_demo, start_demo_fleet
from app.runtime import Runtime
from tests.helpers import eventually
from workers.simulator import FaultConfig


async def test_demo_fleet_is_live_goes_offline_and_returns(make_runtime: Any) -> None:
    rt: Runtime = await make_runtime(offline_after=1.5)
    await seed_demo(rt)
    sim = start_demo_fleet(rt, FaultConfig())  # no random dropouts: the test stops one itself
    cache = rt.services.state_cache
    ids = [eid for eid, _name, _kind in DEMO_FLEET]
    await eventually(lambda: all((cache.get(e) or {}).get("is_live") for e in ids), what="demo fleet live")
    start_rev = cache.revisions["demo-uav-1"]
    started = time.monotonic()
    # At least two state updates a second: the next four within two seconds.
    await eventually(lambda: cache.revisions["demo-uav-1"] - start_rev >= 4, timeout=10, what="four state updates")
    rate = (cache.revisions["demo-uav-1"] - start_rev) / (time.monotonic() - started)
    assert rate >= 2.0, f"state updates {rate:.1f}/s"
    sim.pause("demo-uav-2")
    await eventually(lambda: (cache.get("demo-uav-2") or {}).get("is_live") is False, timeout=8, what="offline")
    sim.resume("demo-uav-2")
    await eventually(lambda: (cache.get("demo-uav-2") or {}).get("is_live") is True, timeout=8, what="back")
