"""MAVLink bridge benchmark: 100 vehicles × 200 msg/s of a typical telemetry mix → NATS.

Runs ``overwatch mavlink`` as its own process (so its CPU is its own) against a real
nats-server, with every vehicle bound to a pre-created entity, and feeds it real MAVLink 2
UDP datagrams (4 messages each, as a buffered autopilot link sends them):

1. **Baseline, same run**: pymavlink parsing the same byte stream alone, in this process
   (one core): messages per second. (The bridge cuts UDP datagrams into frames itself and
   has pymavlink decode only the messages it maps; the others' CRCs are checked and they
   are counted — so it can take in more than pymavlink parses.)
2. **Saturation**: the stream three times over, flat out; the bridge's own count of the
   messages it took in (the kernel drops what it cannot take) per second of its CPU time:
   its capacity on one core, and the ratio to the baseline.
3. **Load**: the target load (100 vehicles × 200 msg/s = 20,000 msg/s) paced in 10 ms
   steps; a NATS subscriber coalesces per vehicle as the server would and checks every
   vehicle's last position arrived; the latency from a position's datagram to the NATS
   message that carries it (p50/p99), and the bridge's CPU share.

Targets (issue #15): ≥ 20,000 msg/s through the bridge on one core; p99 ≤ 100 ms at that load.
Run: ``python bench/mavlink.py [--vehicles 100] [--rate 200] [--seconds 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec
from _server import OVERWATCH, proc_stats

from core import topology
from fabric.server import EmbeddedNats
from services.mavlink import protocol

M = protocol.MAV
PER_DATAGRAM = 4
# Of every 200 messages a vehicle sends per second (a tuned telemetry link of an ArduPilot copter).
MIX = {
    "ATTITUDE": 50,
    "GLOBAL_POSITION_INT": 50,
    "VFR_HUD": 20,
    "SYS_STATUS": 10,
    "GPS_RAW_INT": 10,
    "BATTERY_STATUS": 5,
    "EXTENDED_SYS_STATE": 4,
    "HEARTBEAT": 1,
    "RAW_IMU": 25,  # unmapped by the bridge: counted and dropped, as in real traffic
    "SERVO_OUTPUT_RAW": 25,
}


def message(kind: str, sysid: int, seq: int) -> object:
    """One message of the mix; positions encode (vehicle, seq) in the latitude so arrivals can be matched."""
    if kind == "GLOBAL_POSITION_INT":
        return M.MAVLink_global_position_int_message(
            seq, 370000000 + seq, -1220000000 - sysid, 50000, 20000, 0, 0, 0, 0
        )
    if kind == "ATTITUDE":
        return M.MAVLink_attitude_message(seq, 0.01 * (seq % 10), 0.02, 1.0, 0.0, 0.0, 0.0)
    if kind == "VFR_HUD":
        return M.MAVLink_vfr_hud_message(10.0, 9.5, 90, 40, 70.0, 0.2)
    if kind == "SYS_STATUS":
        return M.MAVLink_sys_status_message(1, 1, 1, 300, 16000, 1200, 70, 0, 0, 0, 0, 0, 0)
    if kind == "GPS_RAW_INT":
        return M.MAVLink_gps_raw_int_message(seq, 3, 370000000, -1220000000, 50000, 80, 120, 950, 9000, 14)
    if kind == "BATTERY_STATUS":
        return M.MAVLink_battery_status_message(0, 0, 0, 2900, [4100] * 4 + [65535] * 6, 1200, 500, -1, 70)
    if kind == "EXTENDED_SYS_STATE":
        return M.MAVLink_extended_sys_state_message(0, 2)
    if kind == "HEARTBEAT":
        return M.MAVLink_heartbeat_message(M.MAV_TYPE_QUADROTOR, protocol.AUTOPILOT_ARDUPILOT, 217, 4, 4, 3)
    if kind == "RAW_IMU":
        return M.MAVLink_raw_imu_message(seq, 1, 2, 3, 4, 5, 6, 7, 8, 9)
    return M.MAVLink_servo_output_raw_message(seq, 0, *([1500] * 8))


def vehicle_second(sysid: int, second: int, rate: int) -> list[tuple[bytes, int | None]]:
    """One vehicle's datagrams for one second, in send order, with the position seq each carries (if any)."""
    scale = rate / 200
    # Each kind's messages spread evenly over the second, interleaved with the others'.
    timeline: list[tuple[float, str]] = []
    for kind, n in MIX.items():
        count = max(1, round(n * scale))
        timeline += [((j + 0.5) / count, kind) for j in range(count)]
    timeline.sort()
    sender = protocol.new_sender(sysid, 1)
    sender.seq = second % 256
    out: list[tuple[bytes, int | None]] = []
    chunk, pos_seq = b"", None
    for i, (_at, kind) in enumerate(timeline):
        seq = second * 1000 + i
        chunk += protocol.pack(sender, message(kind, sysid, seq))
        if kind == "GLOBAL_POSITION_INT":
            pos_seq = seq
        if (i + 1) % PER_DATAGRAM == 0 or i == len(timeline) - 1:
            out.append((chunk, pos_seq))
            chunk, pos_seq = b"", None
    return out


def build_stream(vehicles: int, rate: int, seconds: int) -> list[list[tuple[int, bytes, int | None]]]:
    """Per 10 ms step, the datagrams of every vehicle (vehicle index, bytes, position seq)."""
    steps: list[list[tuple[int, bytes, int | None]]] = [[] for _ in range(seconds * 100)]
    for v in range(vehicles):
        for s in range(seconds):
            grams = vehicle_second(v + 1, s, rate)
            for k, (data, pos) in enumerate(grams):
                steps[s * 100 + (k * 100) // len(grams)].append((v, data, pos))
    return steps


def parse_baseline(steps: list[list[tuple[int, bytes, int | None]]]) -> tuple[int, float]:
    """pymavlink alone: (messages, seconds) to parse every datagram with one parser per vehicle."""
    parsers = [protocol.new_parser() for _ in range(1 + max(v for step in steps for v, _, _ in step))]
    count = 0
    start = time.perf_counter()
    for step in steps:
        for v, data, _ in step:
            count += len(parsers[v].parse_buffer(data) or ())
    return count, time.perf_counter() - start


async def prepare(nats_url: str, vehicles: int) -> None:
    """Streams and buckets, and one EntityState key per bound vehicle (the bridge checks it exists)."""
    import nats

    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await topology.ensure_topology(js, None)
    kv = await js.key_value(topology.BUCKET_STATE)
    for v in range(1, vehicles + 1):
        await kv.put(f"bench-{v}", msgspec.json.encode({"entity_id": f"bench-{v}", "org_id": "bench"}))
    await nc.close()


def bridge_messages(log: str) -> int:
    counts = re.findall(r"MAVLink: \d+ vehicles, (\d+) messages", log)
    return int(counts[-1]) if counts else 0


class Bridge:
    """``overwatch mavlink`` as a subprocess."""

    def __init__(self, nats_url: str, port: int, mapping: Path, workdir: str) -> None:
        self.log = Path(workdir) / "bridge.log"
        env = {
            **os.environ,
            "NATS_URL": nats_url,
            "MAVLINK_ORG": "bench",
            "MAVLINK_MAPPING": str(mapping),
            "LOG_LEVEL": "INFO",
            "OVERWATCH_DATA_DIR": f"{workdir}/data",
        }
        self._out = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [OVERWATCH, "mavlink", "--listen", f"udp:127.0.0.1:{port}", "--env-file", "/nonexistent"],
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)
        self._out.close()
        return self.text()


async def run_phase(
    nats_url: str,
    port: int,
    steps: list[list[tuple[int, bytes, int | None]]],
    vehicles: int,
    mapping: Path,
    workdir: str,
    paced: bool,
) -> dict[str, float]:
    """Feed one bridge process; return its figures."""
    import nats

    bridge = Bridge(nats_url, port, mapping, workdir)
    nc = await nats.connect(nats_url)
    arrivals: list[tuple[float, int, int]] = []  # (time, vehicle, position seq)
    last: dict[int, int] = {}

    async def on_msg(msg: object) -> None:
        now = time.perf_counter()
        body = msgspec.json.decode(msg.data)  # type: ignore[attr-defined]
        glob = (body.get("position") or {}).get("global") or {}
        if "latitude" in glob:
            vehicle = int(msg.subject.rsplit("-", 1)[-1])  # type: ignore[attr-defined]
            seq = round(glob["latitude"] * 1e7) - 370000000
            arrivals.append((now, vehicle, seq))
            last[vehicle] = max(seq, last.get(vehicle, -1))

    await nc.subscribe("constellation.telemetry.bench.*", cb=on_msg)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    target = ("127.0.0.1", port)
    # Warm-up: a HEARTBEAT from every vehicle, until all are known and registered.
    beats = [protocol.pack(protocol.new_sender(v, 1), message("HEARTBEAT", v, 0)) for v in range(1, vehicles + 1)]
    deadline = time.time() + 30
    while "MAVLink bridge for organisation" not in bridge.text():  # its socket is open: nothing sent is lost
        if time.time() > deadline or bridge.proc.poll() is not None:
            raise SystemExit(f"bridge did not start:\n{bridge.text()[-2000:]}")
        await asyncio.sleep(0.05)
    warm = 0
    while bridge.text().count("registered; publishing") < vehicles:
        if time.time() > deadline or bridge.proc.poll() is not None:
            raise SystemExit(f"vehicles not registered:\n{bridge.text()[-2000:]}")
        for data in beats:
            sock.sendto(data, target)
        warm += len(beats)
        await asyncio.sleep(0.3)
    await asyncio.sleep(0.3)
    arrivals.clear()
    cpu0, _ = proc_stats(bridge.proc.pid)
    sent_at: dict[tuple[int, int], float] = {}
    sent_msgs = 0
    last_sent: dict[int, int] = {}
    start = time.perf_counter()
    for i, step in enumerate(steps):
        if paced:
            wait = start + i * 0.01 - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
        now = time.perf_counter()
        for v, data, pos in step:
            sock.sendto(data, target)
            sent_msgs += PER_DATAGRAM
            if pos is not None:
                sent_at[(v + 1, pos)] = now
                last_sent[v + 1] = pos
        if not paced and i % 20 == 0:
            await asyncio.sleep(0)  # let the subscriber breathe
    elapsed = time.perf_counter() - start
    await asyncio.sleep(1.0)  # the last window reaches NATS
    cpu1, rss = proc_stats(bridge.proc.pid)
    await nc.close()
    sock.close()
    log = bridge.stop()
    taken = bridge_messages(log) - warm
    latencies = sorted((t - sent_at[(v, s)]) * 1000 for t, v, s in arrivals if (v, s) in sent_at)
    complete = sum(1 for v, s in last_sent.items() if last.get(v) == s)
    return {
        "sent_msgs": sent_msgs,
        "elapsed": elapsed,
        "taken": taken,
        "cpu": cpu1 - cpu0,
        "rss": rss,
        "publishes": len(arrivals),
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p99": latencies[int(len(latencies) * 0.99) - 1] if latencies else float("nan"),
        "complete": complete,
    }


async def main(vehicles: int, rate: int, seconds: int) -> None:
    steps = build_stream(vehicles, rate, seconds)
    total = sum(len(s) for s in steps) * PER_DATAGRAM
    parsed, took = parse_baseline(steps)
    baseline = parsed / took
    print(f"stream: {vehicles} vehicles × {rate} msg/s × {seconds} s = {total} messages, {PER_DATAGRAM} per datagram")
    print(f"baseline pymavlink parse_buffer alone (this process)     {baseline:9.0f} msg/s")
    with tempfile.TemporaryDirectory() as workdir:
        server = EmbeddedNats(Path(workdir) / "nats", port=-1)
        nats_url = await server.start()
        try:
            await prepare(nats_url, vehicles)
            mapping = Path(workdir) / "mapping.json"
            mapping.write_text(json.dumps({str(v): {"entity_id": f"bench-{v}"} for v in range(1, vehicles + 1)}))
            port = _udp_port()
            sat = await run_phase(nats_url, port, steps * 3, vehicles, mapping, workdir, paced=False)
            per_cpu = sat["taken"] / max(sat["cpu"], 1e-6)
            print(
                f"saturation: sent {sat['sent_msgs']:.0f} in {sat['elapsed']:.1f} s, bridge took in {sat['taken']:.0f}"
                f" (the rest dropped by the kernel's UDP buffer)"
            )
            print(f"bridge capacity on one core (per CPU second)           {per_cpu:9.0f} msg/s   target ≥ 20000")
            print(f"ratio bridge / pymavlink parsing alone                 {per_cpu / baseline:9.2f}")
            load = await run_phase(nats_url, _udp_port(), steps, vehicles, mapping, workdir, paced=True)
            print(
                f"load: {load['sent_msgs'] / load['elapsed']:.0f} msg/s offered for {load['elapsed']:.1f} s,"
                f" bridge took in {load['taken']:.0f} of {load['sent_msgs']:.0f},"
                f" CPU {100 * load['cpu'] / load['elapsed']:.0f}% of one core, RSS {load['rss']:.0f} MB"
            )
            print(
                f"NATS: {load['publishes']:.0f} coalesced publishes with a position;"
                f" last position of {load['complete']:.0f}/{vehicles} vehicles reflected"
            )
            p50, p99 = load["p50"], load["p99"]
            print(f"latency datagram → NATS message   p50 {p50:6.1f} ms   p99 {p99:6.1f} ms   target p99 ≤ 100")
        finally:
            await server.stop()


def _udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--vehicles", type=int, default=100)
    parser.add_argument("--rate", type=int, default=200, help="messages per vehicle per second")
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.vehicles, args.rate, args.seconds)))
