"""Assignment and tracking: optimal matches, stable ids through misses, never shared within a frame."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest

from workers.detect.assign import linear_assignment
from workers.detect.tracker import Tracker, TrackerConfig, new_track_id


def _objective(cost: np.ndarray, pairs: list[tuple[int, int]], threshold: float) -> float:
    """lapjv's: matched costs plus threshold/2 for every row and column left unmatched."""
    rows, cols = cost.shape
    return float(sum(cost[r, c] for r, c in pairs) + (rows + cols - 2 * len(pairs)) * threshold / 2)


def _brute_force(cost: np.ndarray, threshold: float) -> float:
    rows, cols = cost.shape
    best = _objective(cost, [], threshold)
    for k in range(1, min(rows, cols) + 1):
        for rs in itertools.combinations(range(rows), k):
            for cs in itertools.permutations(range(cols), k):
                pairs = list(zip(rs, cs, strict=True))
                if all(cost[r, c] <= threshold for r, c in pairs):
                    best = min(best, _objective(cost, pairs, threshold))
    return best


@pytest.mark.parametrize("seed", range(25))
def test_assignment_is_optimal(seed: int) -> None:
    rng = np.random.default_rng(seed)
    cost = rng.random((int(rng.integers(1, 5)), int(rng.integers(1, 5))))
    matches, un_r, un_c = linear_assignment(cost, 0.7)
    assert len({r for r, _ in matches}) == len(matches) == len({c for _, c in matches})
    assert set(un_r) | {r for r, _ in matches} == set(range(cost.shape[0]))
    assert set(un_c) | {c for _, c in matches} == set(range(cost.shape[1]))
    assert _objective(cost, matches, 0.7) == pytest.approx(_brute_force(cost, 0.7))


def test_track_ids_look_like_cuid2_and_are_unique() -> None:
    ids = {new_track_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(re.fullmatch(r"[a-z][0-9a-z]{23}", i) for i in ids)


def _frame(tracker: Tracker, boxes: list[list[float]], score: float = 0.8) -> list[str]:
    xyxy = np.array(boxes, np.float32).reshape(-1, 4)
    out = tracker.update(xyxy, np.full(len(xyxy), score, np.float32), np.zeros(len(xyxy), np.int64))
    return [t.track_id for t in out]


def test_id_survives_a_five_frame_miss() -> None:
    tracker = Tracker(TrackerConfig(buffer=30))
    ids = []
    for i in range(10):
        ids.append(_frame(tracker, [[100 + 4 * i, 100, 140 + 4 * i, 180]]))
    for _ in range(5):  # the object is not detected for five frames
        assert _frame(tracker, []) == []
    back = _frame(tracker, [[100 + 4 * 15, 100, 140 + 4 * 15, 180]])
    assert back == ids[-1] and len(set(sum(ids, []))) == 1


def test_two_objects_side_by_side_never_share_an_id() -> None:
    tracker = Tracker()
    for i in range(30):
        # two people 2 px apart walking together; one detection per object per frame
        ids = _frame(tracker, [[100 + i, 100, 120 + i, 160], [122 + i, 100, 142 + i, 160]])
        assert len(ids) == len(set(ids))
        if i > 1:
            assert len(ids) == 2
    # crossing paths: still two distinct ids every frame
    tracker = Tracker()
    for i in range(40):
        ids = _frame(tracker, [[100 + 5 * i, 100, 130 + 5 * i, 160], [300 - 5 * i, 100, 330 - 5 * i, 160]])
        assert len(ids) == len(set(ids))


def test_track_is_removed_after_the_buffer() -> None:
    tracker = Tracker(TrackerConfig(buffer=3))
    for _ in range(3):
        first = _frame(tracker, [[10, 10, 50, 50]])
    for _ in range(4):
        _frame(tracker, [])
    assert [t.track_id for t in tracker.removed] == first or not tracker.tracks
    assert not tracker.tracks
    again = _frame(tracker, [[10, 10, 50, 50]])
    assert again == [] or again != first  # a new object gets a new id


def test_low_score_detection_keeps_a_track_alive() -> None:
    tracker = Tracker(TrackerConfig(high=0.3, low=0.1))
    for i in range(5):
        ids = _frame(tracker, [[50 + 2 * i, 50, 90 + 2 * i, 120]], score=0.8)
    weak = _frame(tracker, [[60, 50, 100, 120]], score=0.2)  # second association
    assert weak == ids


def test_label_votes_resist_one_odd_frame() -> None:
    tracker = Tracker()
    box = np.array([[10, 10, 60, 90]], np.float32)
    for _ in range(6):
        tracker.update(box, np.array([0.8], np.float32), np.array([2]))
    out = tracker.update(box, np.array([0.5], np.float32), np.array([4]))
    assert out[0].cls == 2
