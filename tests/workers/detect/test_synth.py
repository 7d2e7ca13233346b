"""The synthetic scene: deterministic, truthful boxes, and a video with a weapon that comes and goes."""

from __future__ import annotations

import hashlib

from workers.detect.painters import CLASSES
from workers.detect.synth import render_scene
from workers.detect.video_scene import VideoScene


def test_same_seed_same_frames() -> None:
    a = [hashlib.md5(render_scene(42 + i).image.tobytes()).hexdigest() for i in range(3)]
    b = [hashlib.md5(render_scene(42 + i).image.tobytes()).hexdigest() for i in range(3)]
    assert a == b and len(set(a)) == 3


def test_truth_boxes_are_inside_the_frame_and_labelled() -> None:
    seen = set()
    for seed in range(40):
        frame = render_scene(1000 + seed)
        assert frame.image.shape == (480, 640, 3)
        for t in frame.truth:
            seen.add(t.label)
            assert 0 <= t.x1 < t.x2 <= 640 and 0 <= t.y1 < t.y2 <= 480
            assert t.x2 - t.x1 >= 4 and t.y2 - t.y1 >= 4
    assert seen == set(CLASSES)


def test_video_scene_moves_and_a_weapon_comes_and_goes() -> None:
    scene = VideoScene(seed=3, fps=10, first_weapon_s=1.0)
    weapon_frames = []
    first = scene.frame()
    for i in range(400):
        frame = scene.frame()
        if any(t.label == "weapon" for t in frame.truth):
            weapon_frames.append(i)
    assert weapon_frames, "a weapon is carried through the scene"
    with_weapon = set(weapon_frames)
    assert any(i not in with_weapon for i in range(weapon_frames[0], 400)), "and it leaves again"
    assert (first.image != frame.image).any()
