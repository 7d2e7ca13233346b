"""CoT benchmark: the gateway's throughput both ways, with baselines measured in the same run.

**Out.** 1,000 entity state views (what the state cache holds) go through the gateway's
hot path — ``entity_events`` → CoT XML (or TAK protocol v1) → an outbound link's queue →
PyTAK's UDP datagram client → a local UDP socket that counts what arrives. Baseline, same
run: PyTAK building the same events alone (``pytak.gen_cot_xml`` + ``ElementTree``), and
``takproto.xml2proto`` converting them, no sending. The ratio gateway / baseline is printed
(above 1: the gateway encodes *and* sends faster than the libraries only encode).

**In.** A started runtime (embedded nats-server, SQLite, every worker) with the gateway's
CoT listener: 1,000 ATAK-style senders' position reports (CoT XML) are handed to the
gateway's event handler as a listener would — parsed by the hardened parser, registered
(first sight only), published as telemetry with JetStream acknowledgement — and the rate
of events parsed and applied is measured (the telemetry worker consumes them meanwhile,
on the same two cores). A second run goes through a real UDP socket; its loss is printed.

Target (issue #16): ≥ 5,000 CoT/s each way. Run: ``python bench/cot.py [--seconds 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from typing import Any

import pytak
from takproto.constants import TAKProtoVer
from takproto.functions import xml2proto

from app.bootstrap import worker_factories
from app.logs import setup_logging
from app.runtime import Runtime
from core.cot_urls import parse_out_urls
from core.settings import Settings
from services.cot.event import to_proto, to_xml
from services.cot.picture import entity_events
from services.cot.transport import OutLink

ENTITIES = 1000


def views(n: int, seq: int) -> list[dict[str, Any]]:
    """State views like the cache's: a live multirotor fleet moving a little each round."""
    return [
        {
            "entity_id": f"uav-{i:04d}",
            "org_id": "bench",
            "name": f"UAV {i}",
            "entity_type": "aircraft_multirotor",
            "affiliation": "friend",
            "status": "active",
            "is_live": True,
            "position": {
                "global": {"latitude": 37.0 + i * 1e-4, "longitude": -122.0 + seq * 1e-6, "altitude_msl": 100}
            },
            "vfr": {"groundspeed": 9.5, "heading": float((seq + i) % 360)},
            "power": {"battery_remaining": 80.0},
            "vehicle_status": {"mode": "AUTO"},
        }
        for i in range(n)
    ]


class Counter(threading.Thread):
    """A UDP receiver in its own thread (as the tablet would be its own process) counting datagrams."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.received = 0

    def run(self) -> None:
        self.sock.settimeout(0.5)
        while True:
            try:
                self.sock.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.received += 1


async def out_gateway(seconds: float, tak_proto: int) -> tuple[float, int, int]:
    """Gateway encode + send; returns (events/s sent, sent, received)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    counter = Counter(sock)
    counter.start()
    url = parse_out_urls(f"udp://127.0.0.1:{port}?tak_proto={tak_proto}", 0)[0]
    stop = asyncio.Event()
    link = OutLink(url, {}, lambda _link: None)
    runner = asyncio.create_task(link.run(stop))
    await asyncio.sleep(0.2)
    start = time.perf_counter()
    seq = 0
    while time.perf_counter() - start < seconds:
        now = time.time()
        for view in views(ENTITIES, seq):
            for ev in entity_events(view, 10.0, now):
                link.offer(to_proto(ev, False) if tak_proto else to_xml(ev))
        seq += 1
        while link.queue:  # the link's pump sends; wait for it before the next round
            await asyncio.sleep(0)
    elapsed = time.perf_counter() - start
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.wait_for(runner, 5)
    sock.close()
    return link.stats.sent / elapsed, link.stats.sent, counter.received


def out_baseline(seconds: float, tak_proto: int) -> float:
    """PyTAK encoding the same events (and takproto converting them), nothing sent; events/s."""
    start = time.perf_counter()
    done = 0
    seq = 0
    while time.perf_counter() - start < seconds:
        for view in views(ENTITIES, seq):
            pos = view["position"]["global"]
            event = pytak.gen_cot_xml(
                lat=pos["latitude"],
                lon=pos["longitude"],
                hae=pos["altitude_msl"],
                uid=view["entity_id"],
                stale=10,
                cot_type="a-f-A-M-H-Q",
                callsign=view["name"],
            )
            assert event is not None
            detail = event.find("detail")
            assert detail is not None
            ET.SubElement(detail, "track", {"course": str(view["vfr"]["heading"]), "speed": "9.5"})
            ET.SubElement(detail, "remarks").text = "status: active; battery: 80%; mode: AUTO"
            data = ET.tostring(event)
            if tak_proto:
                xml2proto(data, TAKProtoVer.MESH)
            done += 1
        seq += 1
    return done / (time.perf_counter() - start)


def atak(uid: str, lat: float, lon: float, now: float) -> bytes:
    t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
    s = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now + 60))
    return (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><event version="2.0" uid="{uid}" type="a-f-G-U-C"'
        f' time="{t}.000Z" start="{t}.000Z" stale="{s}.000Z" how="m-g"><point lat="{lat:.6f}" lon="{lon:.6f}"'
        ' hae="31.2" ce="9.9" le="9999999.0"/><detail><takv os="34" version="5.2.0.11" device="SM-T575"'
        f' platform="ATAK-CIV"/><contact endpoint="*:-1:stcp" callsign="{uid}"/><__group role="Team Member"'
        ' name="Cyan"/><status battery="87"/><track course="45.5" speed="1.2"/></detail></event>'
    ).encode()


async def cot_in(seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        udp = sock.getsockname()[1]
        sock.close()
        settings = Settings(
            data_dir=tmp,
            port=0,
            nats_port=-1,
            admin_password="bench-password-1",
            cot_listen=f"udp://127.0.0.1:{udp}",
            max_entities_per_org=ENTITIES + 10,
            log_level="WARNING",
        )
        rt = Runtime(settings, worker_factories())
        await rt.start()
        try:
            gateway: Any = next(w for w in rt.workers.workers if w.name == "cot")
            await asyncio.wait_for(gateway.ready.wait(), 10)
            # First sight registers each sender (registry writes); measured separately.
            start = time.perf_counter()
            now = time.time()
            for i in range(ENTITIES):
                await gateway.handle(atak(f"ANDROID-{i:04d}", 37 + i * 1e-4, -122.0, now), "bench", None)
            first = ENTITIES / (time.perf_counter() - start)
            print(f"in  first sight (registers {ENTITIES} senders): {first:8.0f} events/s")
            base = gateway.counters["applied"]
            start = time.perf_counter()
            seq = 0
            while time.perf_counter() - start < seconds:
                now = time.time()
                for i in range(ENTITIES):
                    await gateway.handle(
                        atak(f"ANDROID-{i:04d}", 37 + i * 1e-4, -122.0 + seq * 1e-6, now), "bench", None
                    )
                seq += 1
            elapsed = time.perf_counter() - start
            applied = gateway.counters["applied"] - base
            await asyncio.sleep(1.0)
            print(
                f"in  parsed + applied (hardened parse, telemetry published, acked): {applied / elapsed:8.0f} events/s"
                f"  (publish failures: {gateway.counters['publish_failed']})"
            )
            # The same over a real UDP socket, sent at a fixed rate: what reaches the handler.
            rate, total = 5000, int(5000 * min(seconds, 3))
            before = gateway.counters["applied"]
            out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

            def send() -> None:  # another thread, as another process would be: paced at ``rate``
                start = time.perf_counter()
                for n in range(total):
                    i = n % ENTITIES
                    out.sendto(atak(f"ANDROID-{i:04d}", 37 + i * 1e-4, -121.9, time.time()), ("127.0.0.1", udp))
                    if n % 100 == 99:
                        time.sleep(max((n + 1) / rate - (time.perf_counter() - start), 0))

            await asyncio.get_running_loop().run_in_executor(None, send)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_until(lambda: gateway.counters["applied"] - before >= total), 10)
            got = gateway.counters["applied"] - before
            dropped = sum(listener.dropped_datagrams for listener in gateway.listeners)
            print(
                f"in  over UDP at {rate}/s: {got}/{total} applied ({100 * (total - got) / total:.2f}% lost;"
                f" {dropped} dropped by the listener's queue)"
            )
            out.close()
        finally:
            await rt.stop()


async def _until(check: Any) -> None:
    while not check():
        await asyncio.sleep(0.05)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    setup_logging("WARNING", "console")
    for proto, name in ((0, "CoT XML"), (1, "TAK protocol v1")):
        rate, sent, received = await out_gateway(args.seconds, proto)
        base = out_baseline(args.seconds, proto)
        print(
            f"out {name:16s} gateway encode+send: {rate:8.0f} events/s ({received}/{sent} received)"
            f" | pytak/takproto encode alone: {base:8.0f} events/s | ratio {rate / base:.2f}"
        )
    await cot_in(args.seconds)


if __name__ == "__main__":
    asyncio.run(main())
