"""The demo seed for ``serve --demo``: one organisation, a small mixed fleet, and one MAVLink vehicle.

The MAVLink vehicle is the pymavlink emulator talking to the in-process bridge over a
private UDP port on 127.0.0.1: it registers itself (``mav-1``) like a real drone would.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from app.detect_child import DetectChild
from app.runtime import Runtime
from core.contracts.registry import Position
from core.errors import Conflict
from services.mavlink.config import LinkSpec
from services.mavlink.mapping import Binding, load_mapping
from services.nats_auth import INTERNAL_USER, internal_password
from services.schemas import EntityCreate, OrgCreate
from workers.detect.video_scene import SCENE_CAMERA
from workers.simulator import FaultConfig, Simulator, make_fleet

if TYPE_CHECKING:
    from services.mavlink.bridge import Bridge
    from services.mavlink.emulator import Emulator

log = logging.getLogger("overwatch.demo")

DEMO_ORG_ID = "demo"
DEMO_CAMERA_ID = "demo-cam-1"
DEMO_HOME = Position(latitude=37.4275, longitude=-122.1697, altitude=30.0)
# The gate camera's pose: the synthetic scene's mast camera (height, tilt, field of view) at the demo
# home, looking north-east, so the map places its objects where the video shows them.
DEMO_CAMERA_POSE = {
    "latitude": DEMO_HOME.latitude,
    "longitude": DEMO_HOME.longitude,
    "heading_deg": 45.0,
    **SCENE_CAMERA,
}

# (entity_id, name, entity_type)
DEMO_FLEET: tuple[tuple[str, str, str], ...] = (
    ("demo-uav-1", "Raven 1", "aircraft_multirotor"),
    ("demo-uav-2", "Raven 2", "aircraft_multirotor"),
    ("demo-fw-1", "Albatross", "aircraft_fixed_wing"),
    ("demo-ugv-1", "Mule", "ground_vehicle_wheeled"),
    (DEMO_CAMERA_ID, "Gate camera", "isr_sensor"),
)


async def seed_demo(runtime: Runtime) -> None:
    """Create the demo organisation and entities if they are missing (idempotent)."""
    registry = runtime.services.registry
    created = 0
    try:
        await registry.create_org(
            OrgCreate(
                org_id=DEMO_ORG_ID,
                name="Demo Task Force",
                org_type="military",
                description="Simulated fleet for the demo",
            )
        )
        created += 1
    except Conflict:
        pass
    for entity_id, name, entity_type in DEMO_FLEET:
        try:
            await registry.create_entity(
                DEMO_ORG_ID,
                EntityCreate(
                    entity_id=entity_id,
                    name=name,
                    entity_type=entity_type,  # type: ignore[arg-type]
                    status="active",
                    position=DEMO_HOME,
                    metadata={"camera": DEMO_CAMERA_POSE} if entity_id == DEMO_CAMERA_ID else {},
                ),
            )
            created += 1
        except Conflict:
            pass
    log.info("demo seed: %d records created (organisation %s, %d entities)", created, DEMO_ORG_ID, len(DEMO_FLEET))


DEMO_FAULTS = FaultConfig(dropout_rate=0.003, dropout_seconds=20.0)


def start_demo_fleet(runtime: Runtime, faults: FaultConfig = DEMO_FAULTS) -> Simulator:
    """Run the simulator over the demo fleet inside the server (stops with the server)."""
    assert runtime.nc is not None
    fleet = make_fleet(
        DEMO_ORG_ID, [(eid, kind) for eid, _name, kind in DEMO_FLEET], (DEMO_HOME.latitude, DEMO_HOME.longitude)
    )
    # Occasional silences (DEMO_FAULTS) show offline/online transitions and alerts in the demo.
    sim = Simulator(runtime.nc, fleet, rate_hz=4.0, faults=faults)
    runtime.background.append(asyncio.create_task(sim.run(runtime.shutting_down), name="demo-simulator"))
    log.info("demo simulator started for %d entities", len(fleet))
    return sim


def detector_env(runtime: Runtime, entity_id: str, source: str = "synthetic") -> dict[str, str]:
    """Environment for an ``overwatch detect`` child on this server's NATS, with its credentials."""
    s = runtime.settings
    env = {
        "CONSTELLATION_ORG_ID": DEMO_ORG_ID,
        "CONSTELLATION_ENTITY_ID": entity_id,
        "DETECT_SOURCE": source,
        "LOG_LEVEL": s.log_level,
        "LOG_FORMAT": s.log_format,
    }
    if runtime.nats_server is not None:
        env |= {
            "NATS_URL": runtime.nats_server.url,
            "NATS_USER": INTERNAL_USER,
            "NATS_PASSWORD": internal_password(runtime.secret),
        }
        if runtime.nats_tls is not None:
            # Same box: trust exactly the embedded server's certificate, whatever names it carries.
            env |= {"NATS_TLS_CA": str(runtime.nats_tls.cert), "NATS_TLS_VERIFY_HOSTNAME": "false"}
    else:
        env |= {
            "NATS_URL": s.nats_url,
            "NATS_AUTH_TOKEN": s.nats_token,
            "NATS_CREDS_FILE": s.nats_creds,
            "NATS_NKEY_SEED_FILE": s.nats_nkey_seed_file,
        }
    return env


def start_demo_detector(runtime: Runtime) -> DetectChild:
    """Run the detection worker for the demo camera as a supervised child process."""
    child = DetectChild(detector_env(runtime, DEMO_CAMERA_ID))
    runtime.background.append(asyncio.create_task(child.run(runtime.shutting_down), name="demo-detector"))
    return child


DEMO_MAV_SYSID = 1
DEMO_MAV_NAME = "Kestrel (MAVLink)"


async def start_demo_mavlink(runtime: Runtime) -> tuple[Bridge, Emulator]:
    """Run the MAVLink bridge in-process and one emulated vehicle through it (stops with the server)."""
    from app.mavlink_serve import bridge_settings, start_bridge
    from services.mavlink.emulator import Emulator

    settings = bridge_settings(runtime, DEMO_ORG_ID)
    mapping = load_mapping(settings.mapping) if settings.mapping else {}
    mapping.setdefault(DEMO_MAV_SYSID, Binding(name=DEMO_MAV_NAME))
    private = LinkSpec("udp-listen", "127.0.0.1", 0)  # the emulator's own link, whatever else is configured
    bridge = await start_bridge(runtime, settings, extra_links=[private], mapping=mapping)
    emulator = Emulator(
        bridge.udp_address(-1), sysid=DEMO_MAV_SYSID, home=(DEMO_HOME.latitude + 0.0008, DEMO_HOME.longitude, 30.0)
    )
    runtime.background.append(asyncio.create_task(emulator.run(runtime.shutting_down), name="demo-mavlink-vehicle"))
    log.info("demo MAVLink vehicle (system id %d) flying through the bridge", DEMO_MAV_SYSID)
    return bridge, emulator
