"""Camera geometry: pinhole round trips, lat/lon offsets, poses, and projection accuracy on the synthetic scene."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.camera.pose import CameraConfig, PoseError, camera_config, parse_pose_setting, resolve_pose
from core.camera.projection import Pinhole, enu, footprint, latlon_offset, offset_latlon, project_box
from workers.detect.model import DEFAULT_MODEL, Detector
from workers.detect.video_scene import SCENE_CAMERA, Actor, VideoScene

pytestmark = pytest.mark.timeout(60)
POSE = dict(latitude=37.4275, longitude=-122.1697, heading_deg=45.0, **SCENE_CAMERA)


def test_pinhole_pixel_and_ground_are_inverse() -> None:
    cam = Pinhole(height_m=8.0, tilt_deg=7.0, hfov_deg=50.0, width=640, height=480)
    for right, forward in [(0.0, 20.0), (-12.0, 60.0), (30.0, 199.0)]:
        pixel = cam.pixel(right, forward)
        assert pixel is not None
        back = cam.ground(*pixel)
        assert back is not None and back == pytest.approx((right, forward), abs=1e-6)
    assert cam.ground(320, 0) is None  # above the horizon: no ground


def test_latlon_offsets_round_trip_and_heading_turns_the_view() -> None:
    lat, lon = offset_latlon(37.4275, -122.1697, 150.0, -80.0)
    assert latlon_offset(37.4275, -122.1697, lat, lon) == pytest.approx((150.0, -80.0), abs=1e-3)
    pose = resolve_pose({"camera": POSE})
    assert pose is not None
    assert enu(pose, 0.0, 100.0) == pytest.approx((70.71, 70.71), abs=0.01)  # ahead = north-east


def test_pose_from_configuration_and_telemetry() -> None:
    doc = {
        "camera": {"height_m": 6.0, "tilt_deg": 10.0, "hfov_deg": 60.0, "heading_deg": 90.0},
        "position": {"global": {"latitude": 50.0, "longitude": 4.0, "altitude_relative": 0.2}},
        "vfr": {"heading": 270.0},
    }
    pose = resolve_pose(doc)
    # Telemetry moves it; the configured mast height and heading are not replaced by the platform's.
    assert pose is not None and (pose.latitude, pose.height_m, pose.heading_deg) == (50.0, 6.0, 90.0)
    doc["extras"] = {"gimbal": {"yaw": 200.0, "pitch": -30.0}}
    pose = resolve_pose(doc)
    assert pose is not None and (pose.heading_deg, pose.tilt_deg) == (200.0, 30.0)  # a gimbal points it
    assert resolve_pose({"camera": {"height_m": 6.0}}) is None  # incomplete: nothing placed
    fallback = parse_pose_setting("50.1,4.1,5,10,8,70")
    pose = resolve_pose({}, fallback)
    assert pose is not None and pose.hfov_deg == 70.0 and pose.latitude == 50.1
    with pytest.raises(PoseError, match="hfov_deg"):
        camera_config({"hfov_deg": 400})
    with pytest.raises(PoseError, match="6 numbers"):
        parse_pose_setting("1,2,3")
    assert CameraConfig() == camera_config({})


def test_footprint_is_a_closed_fan_within_the_range() -> None:
    pose = resolve_pose({"camera": POSE})
    assert pose is not None
    ring = footprint(pose, 4 / 3)
    assert ring[0] == ring[-1] and len(ring) == 33
    ranges = [math.hypot(*latlon_offset(pose.latitude, pose.longitude, lat, lon)) for lon, lat in ring]
    assert max(ranges) == pytest.approx(pose.max_range_m, rel=1e-3) and min(ranges) > 10


def test_airborne_and_sky_boxes_are_not_placed() -> None:
    pose = resolve_pose({"camera": POSE})
    assert pose is not None
    assert project_box(pose, (0.4, 0.5, 0.5, 0.8), 4 / 3, "drone") is None
    assert project_box(pose, (0.4, 0.05, 0.5, 0.1), 4 / 3, "person") is None  # bottom above the horizon
    geo = project_box(pose, (0.45, 0.6, 0.55, 0.9), 4 / 3, "person")
    assert geo is not None and 10 < geo["range_m"] < 40 and 0 < geo["bearing_deg"] < 90


def _relative_error(pose_kwargs: dict[str, float], box: tuple[float, ...], truth: tuple[float, float, float]) -> float:
    pose = resolve_pose({"camera": pose_kwargs})
    assert pose is not None
    geo = project_box(pose, (box[0] / 640, box[1] / 480, box[2] / 640, box[3] / 480), 640 / 480)
    if geo is None:
        return math.inf
    east, north = latlon_offset(pose.latitude, pose.longitude, geo["latitude"], geo["longitude"])
    te, tn = enu(pose, truth[0], truth[1])
    slant = math.hypot(math.hypot(*truth[:2]), SCENE_CAMERA["height_m"] - truth[2])
    return math.hypot(east - te, north - tn) / slant


def test_rendered_objects_out_to_200_m_project_within_5_percent() -> None:
    # Acceptance 2 (geometry and renderer): people and cars placed 20-200 m ahead, boxes as rendered.
    scene = VideoScene(seed=11)
    scene.actors = []
    for i, forward in enumerate(np.linspace(20, 200, 10)):
        for label, right in (("person", -6.0 + i), ("car", 8.0 - i)):
            size = scene.camera.focal * {"person": 1.75, "car": 4.4}[label] / forward
            actor = Actor(label, size, 0, 0, 0, seed=i)
            actor.right_m, actor.forward_m = right, float(forward)
            scene.actors.append(actor)
    scene.next_weapon = math.inf
    scene.frame()
    errors = [_relative_error(POSE, g.truth[1:], (g.right_m, g.forward_m, g.up_m)) for g in scene.ground]
    assert len(errors) >= 12 and float(np.median(errors)) <= 0.05, errors


@pytest.mark.slow
def test_detected_objects_on_the_synthetic_scene_project_within_5_percent() -> None:
    # Acceptance 2 (end to end): the shipped synthetic model's boxes, projected, against where the scene put them.
    detector = Detector(DEFAULT_MODEL, conf=0.3, threads=1)
    scene = VideoScene(seed=7)
    errors = []
    for i in range(150):
        frame = scene.frame()
        if i % 5:
            continue
        found = detector.detect(frame.image)
        for g in scene.ground:
            if g.up_m:
                continue  # carried, not on the ground
            t = np.array(g.truth[1:], np.float32)
            for box, cls in zip(found.xyxy, found.classes, strict=True):
                inter = np.maximum(0, np.minimum(box[2:], t[2:]) - np.maximum(box[:2], t[:2])).prod()
                union = (box[2:] - box[:2]).prod() + (t[2:] - t[:2]).prod() - inter
                if detector.label(int(cls)) == g.truth.label and inter / union >= 0.5:
                    errors.append(_relative_error(POSE, tuple(box), (g.right_m, g.forward_m, 0.0)))
    assert len(errors) >= 40 and float(np.median(errors)) <= 0.05, (len(errors), float(np.median(errors)))


def test_objects_carry_their_ground_position_into_state_and_events() -> None:
    from workers.detect.events import Identity, detection_event
    from workers.detect.objects import ObjectBook
    from workers.detect.tracker import Track, xyxy_to_xyah

    pose = resolve_pose({"camera": POSE})
    box = np.array([300.0, 300.0, 340.0, 420.0], np.float32)  # a person, feet at row 420 of 640×480
    track = Track("t1", xyxy_to_xyah(box), np.eye(8), 0.8, 0)
    book = ObjectBook({})
    (obj, _), *_ = book.observe([track], ["person"], 640, 480, "2026-01-01T00:00:00Z", 0.0, pose)
    scope = obj.as_scope()
    assert scope["geo"] == obj.geo and obj.geo is not None and 15 < obj.geo["range_m"] < 40
    event = detection_event(
        Identity("o", "cam", "dev", "m"),
        "subject",
        track_id="t1",
        seq=1,
        label="person",
        confidence=0.8,
        bbox=obj.bbox,
        frame_timestamp="t",
        native_id=1,
        threat_level="LOW_THREAT",
        indicators=[],
        reason="new",
        geo=obj.geo,
    )
    assert b'"geo":{"latitude":' in event.payload
    (obj, _), *_ = book.observe([track], ["person"], 640, 480, "t", 0.1, None)  # no pose: no geo
    assert "geo" not in obj.as_scope()
