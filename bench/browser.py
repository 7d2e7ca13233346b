"""Message browser benchmark: page time at the start, middle (by time) and end of a big stream.

A temporary ``nats-server -js`` gets a test stream of N small messages (default
1,000,000, core publishes, file storage) and a small one of 1,000; the app runs
in-process (no workers) and serves ``/nats/messages`` to an httpx ASGI client with an
admin API key. For each position it times the full page (HTTP, 25 direct gets,
rendering) and, as the baseline measured in the same run, one ``js.get_msg`` of the
page's first sequence. Target (issue #7): ≤ 200 ms per page, independent of size.

    .venv/bin/python bench/browser.py [--messages 1000000] [--repeat 15]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from nats.js.api import StorageType, StreamConfig

from app.main import create_app
from app.runtime import Runtime
from core.settings import Settings
from fabric.server import EmbeddedNats

FIRST_SEQ = re.compile(r"/nats/messages/[A-Z_]+/(\d+)\"")


async def fill(runtime: Runtime, stream: str, subject: str, count: int) -> datetime:
    """Publish ``count`` small messages fast; returns the time just before the middle one."""
    nc = runtime.nc
    assert nc is not None
    await runtime.js.add_stream(
        StreamConfig(name=stream, subjects=[f"{subject}.>"], storage=StorageType.FILE, allow_direct=True)
    )
    middle = datetime.now(UTC)
    t0 = time.perf_counter()
    for i in range(count):
        if i == count // 2:
            await nc.flush()
            await wait_count(runtime, stream, i)
            await asyncio.sleep(0.01)
            middle = datetime.now(UTC)
            await asyncio.sleep(0.01)
        await nc.publish(f"{subject}.e{i % 100}", b'{"i":%d,"v":1.5}' % i)
        if i % 5000 == 4999:
            await nc.flush()
    await nc.flush()
    await wait_count(runtime, stream, count)
    took = time.perf_counter() - t0
    print(f"  {stream}: {count:,} messages stored in {took:.1f} s ({count / took:,.0f} msgs/s)")
    return middle


async def wait_count(runtime: Runtime, stream: str, count: int) -> None:
    """Wait until the stream holds ``count`` messages (core publishes are not acknowledged)."""
    for _ in range(6000):
        info = await runtime.js.stream_info(stream)
        if info.state.messages >= count:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{stream} stuck at {info.state.messages} of {count} messages (publishes dropped?)")


async def timed_page(client: httpx.AsyncClient, params: dict[str, str], repeat: int) -> tuple[list[float], int]:
    """Page times in seconds and the first sequence the page shows."""
    times: list[float] = []
    first = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        resp = await client.get("/nats/messages", params=params)
        times.append(time.perf_counter() - t0)
        assert resp.status_code == 200, resp.text[:300]
        found = FIRST_SEQ.search(resp.text)
        assert found, "page shows no message"
        first = int(found.group(1))
    return times, first


async def timed_get(runtime: Runtime, stream: str, seq: int, repeat: int) -> list[float]:
    """Times of one ``js.get_msg`` (direct) of ``seq``."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        await runtime.js.get_msg(stream, seq, direct=True)
        times.append(time.perf_counter() - t0)
    return times


def ms(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"median {statistics.median(values) * 1000:7.1f} ms  p95 {p95 * 1000:7.1f} ms"


async def main(messages: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedNats(Path(tmp) / "nats", port=-1)
        await server.start()
        settings = Settings(data_dir=f"{tmp}/data", nats_url=server.url, port=0, admin_password="bench-password")
        runtime = Runtime(settings, [])
        await runtime.start()
        try:
            print(f"filling streams on {server.url}")
            mids = {
                "BENCH_SMALL": await fill(runtime, "BENCH_SMALL", "small", 1_000),
                "BENCH_BIG": await fill(runtime, "BENCH_BIG", "big", messages),
            }
            key = await runtime.services.apikeys.create("bench", "bench", ["read", "commands", "admin"], None)
            transport = httpx.ASGITransport(app=create_app(runtime))
            async with httpx.AsyncClient(
                transport=transport, base_url="http://bench", headers={"Authorization": f"Bearer {key.key}"}
            ) as client:
                for stream, middle in mids.items():
                    stamp = middle.isoformat().replace("+00:00", "Z")
                    print(f"\n{stream} ({(await runtime.js.stream_info(stream)).state.messages:,} messages)")
                    positions = {
                        "start": {"stream": stream, "from": "start"},
                        "middle": {"stream": stream, "time": stamp},
                        "end": {"stream": stream, "from": "end"},
                        "filtered": {"stream": stream, "subject": f"{stream.split('_')[1].lower()}.e7", "from": "end"},
                    }
                    for name, params in positions.items():
                        await timed_page(client, params, 2)  # warm up
                        page_times, first = await timed_page(client, params, repeat)
                        get_times = await timed_get(runtime, stream, first, repeat)
                        ratio = statistics.median(page_times) / statistics.median(get_times)
                        print(
                            f"  {name:8s} (first seq {first:>9,}): page {ms(page_times)} | "
                            f"get_msg {ms(get_times)} | ratio {ratio:5.1f}x"
                        )
        finally:
            await runtime.stop()
            await server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.repeat))
