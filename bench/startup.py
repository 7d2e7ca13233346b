"""Startup benchmark: process start → ``/health/ready`` = 200, and RSS after start.

Runs ``overwatch serve`` five times on fresh data directories (embedded nats-server on a
random port) and reports the median time to ready and the server's RSS (the Python
process; the nats-server child is reported separately). Baseline measured in the same
run: a bare ``nats-server -js`` from start to "Server is ready".
Targets (issue #2): ready ≤ 2 s, RSS ≤ 120 MB.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from fabric.server import find_nats_server

RUNS = 5
OVERWATCH = str(Path(sys.executable).parent / "overwatch")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def child_pids(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def one_server_run(demo: bool) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = {
            **os.environ,
            "OVERWATCH_DATA_DIR": f"{tmp}/data",
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "NATS_PORT": "-1",
            "LOG_LEVEL": "WARNING",
        }
        args = [OVERWATCH, "serve", *(["--demo"] if demo else [])]
        started = time.perf_counter()
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp)
        try:
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"server exited with {proc.returncode}")
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.01)
            ready = time.perf_counter() - started
            time.sleep(0.5)  # let lazy imports and first requests settle
            httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
            server_rss = rss_mb(proc.pid)
            nats_rss = sum(rss_mb(p) for p in child_pids(proc.pid))
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(10)
        return ready, server_rss, nats_rss


def one_nats_run() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [find_nats_server(), "-js", "-sd", tmp, "-a", "127.0.0.1", "-p", "-1"],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stderr is not None
        for line in proc.stderr:
            if "Server is ready" in line:
                break
        took = time.perf_counter() - started
        proc.terminate()
        proc.wait(5)
        return took


def main() -> None:
    baseline = statistics.median(one_nats_run() for _ in range(RUNS))
    runs = [one_server_run(demo=False) for _ in range(RUNS)]
    demo_runs = [one_server_run(demo=True) for _ in range(RUNS)]
    ready = statistics.median(r[0] for r in runs)
    demo_ready = statistics.median(r[0] for r in demo_runs)
    rss = statistics.median(r[1] for r in runs)
    nats = statistics.median(r[2] for r in runs)
    print(f"baseline  bare nats-server -js ready      median {baseline * 1000:7.0f} ms")
    print(
        f"overwatch serve → /health/ready 200       median {ready * 1000:7.0f} ms  "
        f"(runs: {', '.join(f'{r[0] * 1000:.0f}' for r in runs)})  target ≤ 2000 ms"
    )
    print(f"overwatch serve --demo → ready            median {demo_ready * 1000:7.0f} ms")
    print(f"ratio serve / bare nats-server            {ready / baseline:7.1f}x")
    print(f"RSS server process after start            median {rss:7.1f} MB  target ≤ 120 MB")
    print(f"RSS nats-server child                     median {nats:7.1f} MB")


if __name__ == "__main__":
    main()
