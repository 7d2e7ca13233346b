"""Track points: sampled once, where telemetry is written, and stored by every node.

Every node keeps the whole position history (``tracks`` in its own SQLite), and every
node must store the same points. Reading every telemetry message a second time on every
node cost a tenth of the ingest rate; instead the telemetry worker, which already reads
each message once (on one node of the cluster) and writes each entity's state with a
compare-and-set, decides there which messages become points:

* a message with a position becomes a point when at least ``OVERWATCH_TRACK_INTERVAL``
  seconds of *stream* time passed since the entity's last point — the last few points'
  stream times live in the entity's value (``track_sampled``), so the decision is
  serialized by the CAS across nodes and survives restarts;
* the points are published to ``CONSTELLATION_TRACKS`` (``constellation.tracks.{org}``,
  server-internal; devices have no permission on it) with a ``Nats-Msg-Id`` of entity and
  stream time, *before* the telemetry is acknowledged: a message redelivered after a crash
  between the write and the publish finds its own time among the recent ones and is
  published again, which the stream's duplicate window drops if it did arrive;
* every node's ``TrackProjector`` reads that small stream through its own consumer
  (``workers/projection.py``) into ``tracks``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from core import topology
from core.contracts.telemetry import position_of
from db import tracks as tracks_db
from db.tracks import TrackPoint
from workers.base import WorkerContext
from workers.projection import Batch, ProjectionWorker

log = logging.getLogger("overwatch.workers.tracks")

TRACK_FIELD = "track_sampled"  # stream times (ns) of the entity's last sampled points, in its value
RECENT = 8  # how many are kept: a redelivered message sampled before is recognised among them


class Candidate(NamedTuple):
    """A telemetry message with a position: a point if it is due."""

    ts_ns: int  # when the stream stored the message
    latitude: float
    longitude: float
    altitude: float | None
    heading: float | None
    speed: float | None
    battery: float | None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _scope(doc: dict[str, Any], name: str) -> dict[str, Any]:
    value = doc.get(name)
    return value if isinstance(value, dict) else {}


def candidate(patch: dict[str, Any], ts_ns: int) -> Candidate | None:
    """The message's position and what a point carries besides (``None`` without a position)."""
    position = position_of(patch)
    if position is None:
        return None
    vfr, power = _scope(patch, "vfr"), _scope(patch, "power")
    return Candidate(
        ts_ns,
        position[0],
        position[1],
        position[2],
        _float(vfr.get("heading")),
        _float(vfr.get("groundspeed")),
        _float(power.get("battery_remaining")),
    )


def sample(
    doc: dict[str, Any], entity_id: str, candidates: Sequence[Candidate], interval_s: float
) -> list[tuple[int, TrackPoint]]:
    """The points among ``candidates`` (greedy by stream time from the entity's last point); records them in ``doc``.

    ``doc`` is the entity's value before this write's telemetry is merged: a point's heading,
    speed or battery missing from its own message comes from the entity's state.
    """
    recent = [v for v in doc.get(TRACK_FIELD) or () if isinstance(v, int)]
    last = max(recent) if recent else None
    interval_ns = round(interval_s * 1e9)
    vfr, power = _scope(doc, "vfr"), _scope(doc, "power")
    points: list[tuple[int, TrackPoint]] = []
    for c in sorted(candidates):
        if c.ts_ns in recent:
            pass  # sampled by an earlier write of this (redelivered) message: published again, deduplicated
        elif last is None or c.ts_ns - last >= interval_ns:
            recent.append(c.ts_ns)
            last = c.ts_ns
        else:
            continue
        point = TrackPoint(
            entity_id=entity_id,
            ts=c.ts_ns / 1e9,
            latitude=c.latitude,
            longitude=c.longitude,
            altitude=c.altitude,
            heading=c.heading if c.heading is not None else _float(vfr.get("heading")),
            speed=c.speed if c.speed is not None else _float(vfr.get("groundspeed")),
            battery=c.battery if c.battery is not None else _float(power.get("battery_remaining")),
        )
        points.append((c.ts_ns, point))
    if points:
        doc[TRACK_FIELD] = sorted(recent)[-RECENT:]
    return points


async def publish_points(js: JetStreamContext, org_id: str, points: Sequence[tuple[int, TrackPoint]]) -> None:
    """Publish sampled points (acknowledged by the stream; raises if any is not)."""
    subject = topology.tracks_subject(org_id)
    await asyncio.gather(
        *(
            js.publish(subject, msgspec.json.encode(p), headers={"Nats-Msg-Id": f"{p.entity_id}@{ts_ns}"})
            for ts_ns, p in points
        )
    )


_decode_point = msgspec.json.Decoder(TrackPoint).decode


class TrackProjector(ProjectionWorker):
    """This node's position history (``ow-{node}-track-points``): the sampled points, into ``tracks``."""

    name = "tracks-projection"
    stream = topology.STREAM_TRACKS
    filter_subject = topology.SUBJECT_TRACKS_ALL
    projection = "track-points"
    batch_size = 1000
    retention = ("tracks", "track_retention_hours")

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        self.skipped = 0

    async def prepare(self, msgs: Sequence[Msg]) -> Batch:
        """Decode the points; they are written with the cursor."""
        points: list[TrackPoint] = []
        for msg in msgs:
            try:
                points.append(_decode_point(msg.data))
            except msgspec.DecodeError as exc:
                self.skipped += 1  # only the server publishes here; say so if something else did
                log.warning("%s: not a track point on %s: %s", self.name, msg.subject, exc)
        batch = Batch()
        if points:

            async def write(conn: Any) -> None:
                await tracks_db.insert_points_in(conn, points)

            batch.writes.append(write)
        batch.after.append(self.prune_old)
        return batch
