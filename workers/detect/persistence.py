"""Track persistence: a track is published only once it has been seen in N of the last M frames.

Real video throws up detections that last a frame or two — a poster read as a person,
a bollard as a fire hydrant. The tracker already wants two consecutive matches before
it confirms a track; this filter asks more of a track before the worker makes an
object, an event and an EntityState entry of it, and keeps asking nothing more once it
has: a published track stays published while the tracker keeps it (a short occlusion
does not hide it again), so ids and events stay stable.
"""

from __future__ import annotations

from collections.abc import Iterable

from workers.detect.tracker import Track


class Persistence:
    """N-of-M hit filter over track ids, memory bounded by the tracker's live tracks."""

    def __init__(self, min_hits: int = 3, window: int = 5) -> None:
        if not 1 <= min_hits <= window <= 64:
            raise ValueError(f"need 1 <= min_hits <= window <= 64, got {min_hits} of {window}")
        self.min_hits, self.window = min_hits, window
        self._mask = (1 << window) - 1
        self.hits: dict[str, int] = {}  # track id → bit per frame, newest in bit 0
        self.published: set[str] = set()
        self.held_back = 0  # matched tracks not (yet) published, summed over frames

    def update(self, live: Iterable[Track], matched: list[Track]) -> list[Track]:
        """Record this frame (``live``: every track the tracker holds) and return the publishable ``matched``."""
        alive: dict[str, int] = {}
        for track in live:
            seen = track.state == "tracked" and track.missed == 0
            alive[track.track_id] = ((self.hits.get(track.track_id, 0) << 1) | seen) & self._mask
        self.hits = alive
        self.published &= alive.keys()
        out = []
        for track in matched:
            tid = track.track_id
            if tid in self.published or alive.get(tid, 0).bit_count() >= self.min_hits:
                self.published.add(tid)
                out.append(track)
            else:
                self.held_back += 1
        return out
