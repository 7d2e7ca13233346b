"""Ingest benchmark: telemetry for 1,000 entities → KV-visible EntityState.

Starts ``overwatch serve`` (embedded nats-server) as a subprocess, registers 1,000
entities, then:

1. **Saturation**: publishes telemetry as fast as JetStream accepts it for a fixed
   time and measures the sustained rate the TelemetryWorker *applies* (acknowledges
   after the KV write) from the consumer's ack floor.
2. **Lag**: publishes at 5,000 msg/s (5 Hz per entity) with the send time in the
   payload and measures publish → state visible (a KV watcher in this process).
3. **Baseline, same run**: a plain nats-py pull consumer that fetches and acks the same
   stored messages and does nothing else; the ratio applied / raw is printed.

Targets (issue #3): ≥ 10,000 msg/s applied; lag p99 ≤ 250 ms at 5,000 msg/s.
Run: ``python bench/ingest.py [--entities 1000] [--seconds 10]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import datetime

import msgspec
import nats
from _server import BenchServer
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from core import topology
from services.nats_auth import INTERNAL_USER


def payload(i: int, seq: int, sent: float) -> bytes:
    return msgspec.json.encode(
        {
            "position": {
                "global": {"latitude": 37.0 + i * 1e-4, "longitude": -122.0 + seq * 1e-6, "altitude_msl": 100.0}
            },
            "power": {"battery_remaining": 80.0},
            "vfr": {"groundspeed": 10.0, "heading": float(seq % 360)},
            "bench": {"seq": seq, "sent": sent},
        }
    )


async def ack_floor(js: nats.js.JetStreamContext) -> int:
    info = await js.consumer_info(topology.STREAM_TELEMETRY, topology.CONSUMER_TELEMETRY)
    return int(info.ack_floor.stream_seq if info.ack_floor else 0)


async def saturate(js: nats.js.JetStreamContext, entities: int, seconds: float) -> tuple[int, float, float]:
    """Publish flat out; return (published, applied msg/s while backlogged, drain seconds)."""
    stream_start = (await js.stream_info(topology.STREAM_TELEMETRY)).state.last_seq
    subjects = [topology.telemetry_subject("bench", f"b{i:04d}") for i in range(entities)]
    published = 0
    seq = 0
    start = time.perf_counter()
    samples: list[tuple[float, int]] = []
    next_sample = start + 1.0
    nc = js._nc
    while time.perf_counter() - start < seconds:
        seq += 1
        # Core publishes into the stream's subjects: the cheapest possible producer, so the
        # machine's two cores go to nats-server and the server under test.
        for i in range(entities):
            await nc.publish(subjects[i], payload(i, seq, time.time()))
        await nc.flush()
        published += entities
        if time.perf_counter() >= next_sample:
            samples.append((time.perf_counter(), await ack_floor(js)))
            next_sample += 1.0
    publish_end = time.perf_counter()
    target = stream_start + published
    while await ack_floor(js) < target:
        await asyncio.sleep(0.1)
        if time.perf_counter() - publish_end > 120:
            raise SystemExit("telemetry worker did not catch up within 120 s")
    drained = time.perf_counter()
    samples.append((drained, target))
    # Applied rate over the whole run: everything published was applied by `drained`.
    first_t, first_seq = samples[0] if samples else (start, stream_start)
    applied_rate = (target - first_seq) / (drained - first_t)
    return published, applied_rate, drained - publish_end


async def lag_run(
    nc: nats.NATS, js: nats.js.JetStreamContext, entities: int, rate: float, seconds: float
) -> list[float]:
    """Publish at ``rate`` msg/s; return publish→visible lags (s) seen by a KV watcher."""
    kv = await js.key_value(topology.BUCKET_STATE)
    lags: list[float] = []
    write_lags: list[float] = []
    measuring = asyncio.Event()

    async def watch() -> None:
        watcher = await kv.watchall(include_history=False)
        async for entry in watcher:
            if entry is None or not entry.value or not measuring.is_set():
                continue
            doc = msgspec.json.decode(entry.value)
            sent = ((doc.get("extras") or {}).get("bench") or {}).get("sent")
            if sent:
                now = time.time()
                lags.append(now - sent)
                written = datetime.fromisoformat(doc["updated_at"].replace("Z", "+00:00")).timestamp()
                write_lags.append(written - sent)

    watch_task = asyncio.create_task(watch())
    await asyncio.sleep(1.0)  # let the watcher finish its snapshot
    subjects = [topology.telemetry_subject("bench", f"b{i:04d}") for i in range(entities)]
    per_round = entities / rate  # seconds for one message per entity
    start = time.perf_counter()
    seq = 10_000_000
    warmup = 2.0  # steady state only: the first write of each entity after a start reads KV once
    while time.perf_counter() - start < seconds + warmup:
        if not measuring.is_set() and time.perf_counter() - start >= warmup:
            measuring.set()
        round_start = time.perf_counter()
        seq += 1
        for i in range(entities):
            await nc.publish(subjects[i], payload(i, seq, time.time()))
            if i % 50 == 49:
                await nc.flush()
                # Spread the round over its time slot instead of bursting.
                ahead = round_start + per_round * (i + 1) / entities - time.perf_counter()
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await nc.flush()
    await asyncio.sleep(1.0)
    measuring.clear()
    watch_task.cancel()
    write_lags.sort()
    if write_lags:
        print(
            f"  of which publish → KV write (server clock): p50 {statistics.median(write_lags) * 1000:.0f} ms  "
            f"p99 {write_lags[int(len(write_lags) * 0.99) - 1] * 1000:.0f} ms"
        )
    return lags


async def raw_baseline(js: nats.js.JetStreamContext, count: int) -> float:
    """Fetch + ack ``count`` stored telemetry messages with a bare pull consumer; msg/s."""
    cfg = ConsumerConfig(
        durable_name="bench-raw",
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        max_ack_pending=20000,
        filter_subject=topology.SUBJECT_TELEMETRY_ALL,
    )
    await js.add_consumer(topology.STREAM_TELEMETRY, cfg)
    sub = await js.pull_subscribe_bind("bench-raw", topology.STREAM_TELEMETRY)
    done = 0
    start = time.perf_counter()
    while done < count:
        for msg in await sub.fetch(1000, timeout=5):
            await msg.ack()
            done += 1
    took = time.perf_counter() - start
    await sub.unsubscribe()
    await js.delete_consumer(topology.STREAM_TELEMETRY, "bench-raw")
    return done / took


async def main(entities: int, seconds: float, rate: float = 5000.0, lag_only: bool = False) -> None:
    async with BenchServer(OVERWATCH_TRACK_INTERVAL="5") as server:
        async with server.http() as http:
            await http.post("/api/v1/organizations", json={"name": "Bench", "org_type": "ngo", "org_id": "bench"})
            sem = asyncio.Semaphore(16)

            async def register(i: int) -> None:
                async with sem:
                    r = await http.post(
                        "/api/v1/organizations/bench/entities",
                        json={"entity_type": "aircraft_multirotor", "entity_id": f"b{i:04d}"},
                    )
                    assert r.status_code == 201, r.text

            t0 = time.perf_counter()
            await asyncio.gather(*(register(i) for i in range(entities)))
            print(f"registered {entities} entities in {time.perf_counter() - t0:.1f} s")
        password = server.nats_password()
        nc = await nats.connect(server.nats_url, pending_size=256 * 1024 * 1024, user=INTERNAL_USER, password=password)
        js = nc.jetstream(timeout=10)
        if lag_only:
            published, applied, drain, raw = 0, float("nan"), 0.0, float("nan")
        else:
            published, applied, drain = await saturate(js, entities, seconds)
            raw = await raw_baseline(js, published)
        lags = await lag_run(nc, js, entities, rate, min(seconds, 8.0))
        await nc.close()
    lags.sort()
    p50 = statistics.median(lags) * 1000 if lags else float("nan")
    p99 = lags[int(len(lags) * 0.99) - 1] * 1000 if lags else float("nan")
    print(f"saturation: published {published} msgs for {entities} entities in {seconds:.0f} s")
    print(f"applied (telemetry-processor acks after KV write)   {applied:9.0f} msg/s   target ≥ 10000")
    print(f"baseline raw nats-py fetch+ack, same messages       {raw:9.0f} msg/s")
    print(f"ratio applied / raw                                 {applied / raw:9.2f}")
    print(f"backlog drained {drain:.1f} s after publishing stopped")
    print(
        f"lag publish → state visible at {rate:.0f} msg/s: p50 {p50:.0f} ms  p99 {p99:.0f} ms  "
        f"(n={len(lags)})  target p99 ≤ 250 ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entities", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=5000.0, help="msg/s of the lag phase")
    parser.add_argument("--lag-only", action="store_true", help="skip the saturation and baseline phases")
    a = parser.parse_args()
    asyncio.run(main(a.entities, a.seconds, a.rate, a.lag_only))
