"""A camera's pose in its registry record: validated by the API, projected into its state, followed by the worker."""

from __future__ import annotations

import httpx
import pytest

from app.runtime import Runtime
from core.camera.pose import resolve_pose
from tests.helpers import eventually, state

pytestmark = pytest.mark.timeout(30)

V1 = "/api/v1/organizations"
POSE = {"latitude": 37.4275, "longitude": -122.1697, "height_m": 8, "heading_deg": 45, "tilt_deg": 7, "hfov_deg": 50}


async def test_camera_pose_from_the_record_reaches_the_state_and_a_bad_one_is_refused(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await client.post(V1, json={"name": "O", "org_type": "ngo", "org_id": "o"})
    bad = {"entity_id": "cam", "entity_type": "isr_sensor", "metadata": {"camera": {**POSE, "hfov_deg": 400}}}
    r = await client.post(f"{V1}/o/entities", json=bad)
    assert r.status_code == 422 and "hfov_deg" in r.text, r.text
    r = await client.post(f"{V1}/o/entities", json={**bad, "metadata": {"camera": {**POSE, "zoom": 3}}})
    assert r.status_code == 422 and "zoom" in r.text, r.text

    r = await client.post(f"{V1}/o/entities", json={**bad, "metadata": {"camera": POSE, "site": "gate"}})
    assert r.status_code == 201, r.text

    async def camera() -> dict | None:
        doc = await state(runtime, "cam")
        return doc.get("camera") if doc else None

    assert await eventually(camera, what="camera in the state") == {k: float(v) for k, v in POSE.items()}
    pose = resolve_pose(await state(runtime, "cam"))
    assert pose is not None and pose.heading_deg == 45.0 and pose.max_range_m == 200.0

    # An update that breaks the pose is refused and changes nothing; one that removes it clears the state's.
    r = await client.put(f"{V1}/o/entities/cam", json={"metadata": {"camera": {"tilt_deg": "down"}}})
    assert r.status_code == 422, r.text
    r = await client.put(f"{V1}/o/entities/cam", json={"metadata": {"site": "gate"}})
    assert r.status_code == 200, r.text
    await eventually(lambda: _no_camera(runtime), what="camera gone from the state")


async def _no_camera(runtime: Runtime) -> bool:
    doc = await state(runtime, "cam")
    return bool(doc) and "camera" not in doc
