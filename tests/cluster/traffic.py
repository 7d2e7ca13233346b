"""Traffic and inspection for the scale-out tests and ``bench/cluster.py``.

Publishing follows the feasibility study's rule for a cluster: every message carries a
``Nats-Msg-Id`` and is re-sent with the same id until JetStream acknowledges it, so a
member dying mid-ingest loses nothing acknowledged and stores nothing twice.
Each node's histories are read straight from its SQLite file (read-only, WAL).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from core import topology

Message = tuple[str, bytes, str]  # subject, payload, Nats-Msg-Id


def sizes() -> tuple[int, int]:
    """(telemetry, detection events) per acceptance test: small by default, the issue's with
    ``OVERWATCH_CLUSTER_FULL=1`` (10,000 and 500; the edge test halves them as its acceptance does)."""
    if os.environ.get("OVERWATCH_CLUSTER_FULL") == "1":
        return 10_000, 500
    return 2_000, 100


def telemetry_payload(entity_index: int, seq: int) -> bytes:
    """Ontology telemetry whose ``seq`` (kept in ``extras``) tells which message was applied last."""
    return msgspec.json.encode(
        {
            "position": {
                "global": {
                    "latitude": 37.0 + entity_index * 1e-3 + seq * 1e-6,
                    "longitude": -122.0 + seq * 1e-6,
                    "altitude_msl": 100.0,
                }
            },
            "power": {"battery_remaining": 90.0 - (seq % 50), "voltage": 16.0},
            "vfr": {"groundspeed": 9.0, "heading": float(seq % 360)},
            "seq": seq,
        }
    )


def detection_payload(org: str, entity: str, track: str, n: int) -> bytes:
    """A detection; every fifth raises a HIGH threat, every seventh says the track was lost."""
    threat = "HIGH_THREAT" if n % 5 == 0 else "LOW_THREAT"
    now = datetime.now(UTC).isoformat()
    return msgspec.json.encode(
        {
            "timestamp": now,
            "event_type": "lost" if n % 7 == 3 else "detection",
            "entity_id": entity,
            "device_id": "test",
            "organization_id": org,
            "detection": {
                "track_id": track,
                "model_type": "test",
                "label": "vehicle",
                "confidence": 0.5 + (n % 40) / 100,
                "bbox": {"x_min": 0.1, "y_min": 0.1, "x_max": 0.2, "y_max": 0.2},
                "timestamp": now,
                "metadata": {"threat_level": threat, "n": n},
            },
        }
    )


def traffic(org: str, entities: list[str], telemetry: int, detections: int, tag: str) -> list[Message]:
    """Telemetry spread over ``entities`` and detections interleaved; ids unique per ``tag``."""
    out: list[Message] = []
    every = max(1, telemetry // max(1, detections))
    d = 0
    for seq in range(telemetry):
        i = seq % len(entities)
        out.append((topology.telemetry_subject(org, entities[i]), telemetry_payload(i, seq), f"{tag}-t{seq}"))
        if seq % every == 0 and d < detections:
            entity = entities[d % len(entities)]
            subject = topology.detection_subject(org, entity)
            out.append((subject, detection_payload(org, entity, f"trk{d % 13}", d), f"{tag}-d{d}"))
            d += 1
    while d < detections:
        entity = entities[d % len(entities)]
        out.append(
            (topology.detection_subject(org, entity), detection_payload(org, entity, f"trk{d % 13}", d), f"{tag}-d{d}")
        )
        d += 1
    return out


async def publish_reliably(
    js: JetStreamContext,
    messages: Iterable[Message],
    window: int = 64,
    deadline_s: float = 60.0,
    counts: dict[str, int] | None = None,
) -> dict[str, int]:
    """Publish with ``Nats-Msg-Id``, ``window`` in flight, re-sending each until acknowledged.

    Returns (and keeps up to date in ``counts``, for a watcher): ``acked``, ``duplicates``
    (acks for a re-send that had been stored), ``retries`` (publishes sent again).
    """
    counts = counts if counts is not None else {}
    for key in ("acked", "duplicates", "retries"):
        counts.setdefault(key, 0)
    deadline = time.monotonic() + deadline_s
    queue = list(messages)

    async def one(subject: str, data: bytes, msg_id: str) -> None:
        while True:
            try:
                ack = await js.publish(subject, data, headers={"Nats-Msg-Id": msg_id}, timeout=2.0)
            except Exception:  # no ack: the same id again (stored at most once)
                if time.monotonic() > deadline:
                    raise
                counts["retries"] += 1
                await asyncio.sleep(0.1)
                continue
            counts["acked"] += 1
            counts["duplicates"] += int(bool(ack.duplicate))
            return

    for start in range(0, len(queue), window):
        await asyncio.gather(*(one(*m) for m in queue[start : start + window]))
    return counts


class Device:
    """Answers every command of an organisation with ``accepted`` then ``completed``."""

    def __init__(self, nc: NATS, org: str) -> None:
        self.nc = nc
        self.org = org
        self.received: list[str] = []

    async def start(self) -> Device:
        """Subscribe to the organisation's commands."""
        await self.nc.subscribe(topology.command_wildcard(self.org), cb=self._on_command)
        return self

    async def _on_command(self, msg: Msg) -> None:
        body = msgspec.json.decode(msg.data)
        entity = msg.subject.rsplit(".", 1)[-1]
        self.received.append(body["command_id"])
        for status in ("accepted", "completed"):
            ack = {"command_id": body["command_id"], "status": status, "detail": f"{status} by test device"}
            with contextlib.suppress(Exception):
                await self.nc.publish(topology.command_ack_subject(self.org, entity), msgspec.json.encode(ack))


def api(url: str, key: str) -> httpx.AsyncClient:
    """An HTTP client for one node's API (asynchronous: the tests' publishers and watchers run beside it)."""
    return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=10.0)


async def register(client: httpx.AsyncClient, org: str, entities: list[str]) -> None:
    """Create an organisation and its entities through a node's API."""
    r = await client.post("/api/v1/organizations", json={"org_id": org, "name": f"Org {org}", "org_type": "military"})
    assert r.status_code in (201, 409), r.text
    for entity in entities:
        r = await client.post(
            f"/api/v1/organizations/{org}/entities",
            json={"entity_id": entity, "name": entity, "entity_type": "aircraft_multirotor"},
        )
        assert r.status_code in (201, 409), r.text


class NodeDb:
    """One node's SQLite, read-only."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "overwatch.db"

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of a query (a fresh connection each time: sees the latest commit)."""
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5.0)
        try:
            return [tuple(r) for r in conn.execute(sql, params).fetchall()]
        finally:
            conn.close()

    def cursors(self) -> dict[str, int]:
        """Projection cursors."""
        return {str(name): int(seq) for name, seq in self.rows("SELECT name, seq FROM projection_cursors")}

    def histories(self, org: str) -> dict[str, list[tuple[Any, ...]]]:
        """What must be the same on every node: detections, alerts, tracks and commands of ``org``."""
        return {
            "detections": self.rows(
                "SELECT entity_id, track_id, label, confidence, threat_level, event_type, metadata, ts, received_at"
                " FROM detections WHERE org_id = ? ORDER BY received_at, entity_id, track_id, metadata",
                (org,),
            ),
            # Event-driven alerts carry the stream's times: identical in every column.
            "alerts": self.rows(
                "SELECT alert_id, kind, severity, title, reason, status, created_at, updated_at, cleared_at, data"
                " FROM alerts WHERE org_id = ? AND kind IN ('threat', 'device') ORDER BY alert_id",
                (org,),
            ),
            "tracks": self.rows(
                "SELECT t.entity_id, t.ts, t.latitude, t.longitude, t.heading, t.speed, t.battery FROM tracks t"
                " JOIN entities e ON e.entity_id = t.entity_id WHERE e.org_id = ? ORDER BY t.entity_id, t.ts",
                (org,),
            ),
            "commands": self.rows(
                "SELECT command_id, entity_id, command, status, detail, issued_at, updated_at, expires_at,"
                " delivered_at FROM commands WHERE org_id = ? ORDER BY issued_at, command_id",
                (org,),
            ),
        }


async def consumer_counts(js: JetStreamContext, stream: str, durable: str) -> tuple[int, int, int]:
    """(delivered consumer sequence, redelivered, acknowledged stream sequence) of a shared durable."""
    info = await js.consumer_info(stream, durable)
    return (
        int(info.delivered.consumer_seq if info.delivered else 0),
        int(info.num_redelivered or 0),
        int(info.ack_floor.stream_seq if info.ack_floor else 0),
    )
