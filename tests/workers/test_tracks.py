"""Track sampling (``workers/tracks.py``): greedy by stream time, recorded in the value, redelivery-safe."""

from __future__ import annotations

from typing import Any

from workers.tracks import RECENT, TRACK_FIELD, Candidate, candidate, sample

S = 1_000_000_000  # ns per second


def at(seconds: float, heading: float | None = None) -> Candidate:
    return Candidate(round(seconds * S), 37.0 + seconds / 1000, -122.0, 100.0, heading, None, None)


def test_points_are_a_greedy_sample_by_stream_time_and_recorded_in_the_value() -> None:
    doc: dict[str, Any] = {}
    points = sample(doc, "e1", [at(0.0), at(0.5), at(1.0), at(2.1), at(2.2), at(4.1)], 2.0)
    assert [p.ts for _, p in points] == [0.0, 2.1, 4.1]
    assert doc[TRACK_FIELD] == [0, round(2.1 * S), round(4.1 * S)]
    # The next write continues from the recorded point, whichever node makes it.
    assert [p.ts for _, p in sample(doc, "e1", [at(5.0), at(6.2)], 2.0)] == [6.2]


def test_a_redelivered_sampled_message_is_published_again_and_nothing_else_is() -> None:
    doc: dict[str, Any] = {}
    first = sample(doc, "e1", [at(10.0)], 2.0)
    again = sample(doc, "e1", [at(10.0), at(11.0)], 2.0)  # its node died before publishing
    assert [ts for ts, _ in again] == [ts for ts, _ in first] == [10 * S]
    assert doc[TRACK_FIELD] == [10 * S]


def test_older_messages_of_another_node_are_not_sampled_and_the_mark_stays_bounded() -> None:
    doc: dict[str, Any] = {}
    sample(doc, "e1", [at(float(i * 3)) for i in range(20)], 2.0)
    assert len(doc[TRACK_FIELD]) == RECENT and doc[TRACK_FIELD][-1] == 57 * S
    assert sample(doc, "e1", [at(50.5)], 2.0) == []  # written out of order: older than the last point


def test_a_point_takes_missing_values_from_the_state_and_its_own_first() -> None:
    doc: dict[str, Any] = {"vfr": {"heading": 90.0, "groundspeed": 5.0}, "power": {"battery_remaining": 55.0}}
    ((_, point),) = sample(doc, "e1", [at(1.0, heading=180.0)], 2.0)
    assert (point.heading, point.speed, point.battery) == (180.0, 5.0, 55.0)


def test_only_messages_with_a_valid_position_are_candidates() -> None:
    assert candidate({"vfr": {"heading": 1.0}}, 5) is None
    assert candidate({"position": {"global": {"latitude": 91.0, "longitude": 0.0}}}, 5) is None
    c = candidate({"position": {"global": {"latitude": 1.0, "longitude": 2.0}}, "power": {"battery_remaining": 9}}, 5)
    assert c == Candidate(5, 1.0, 2.0, None, None, None, 9.0)
