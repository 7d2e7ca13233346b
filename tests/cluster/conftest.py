"""Fixtures of the scale-out group: a 3-server hub cluster and two ``overwatch serve`` nodes on it.

Started once for the group (a cluster elects its meta leader in a few seconds, nodes take
a few more to start): every test uses its own organisation, so they do not see each
other's data. The nodes are a hub of one edge box (``OVERWATCH_EDGES=edge1``), which
``test_edge.py`` starts; until then their link to it is down, which the cluster tests
ignore. Every process is real, on loopback with free ports, and killed at the end.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cluster.fabric import HubCluster
from tests.cluster.traffic import NodeDb
from tests.conftest import ServerProcess


@dataclass
class Node:
    """An Overwatch node and what the tests need of it."""

    proc: ServerProcess
    key: str
    db: NodeDb

    @property
    def url(self) -> str:
        """Its HTTP base URL."""
        return self.proc.url


def start_node(root: Path, name: str, env: dict[str, str]) -> ServerProcess:
    """``overwatch serve`` with ``env`` and its own data directory."""
    return ServerProcess(
        root / name / "data",
        {
            "LOG_LEVEL": "WARNING",
            "OVERWATCH_ADMIN_PASSWORD": "admin-password-for-tests",
            # A cluster that just formed places replicated streams slowly while two nodes create them.
            "OVERWATCH_STARTUP_TIMEOUT": "40",
            **env,
        },
    ).start()


EDGE = "edge1"  # the recipe's OVERWATCH_EDGES and the edge's NATS_DOMAIN


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubCluster]:
    """Three ``nats-server`` processes as one JetStream cluster (domain ``hub``)."""
    cluster = HubCluster(tmp_path_factory.mktemp("hub")).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def nodes(hub: HubCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Node]]:
    """Two Overwatch nodes on the hub cluster, with R3 streams and buckets."""
    root = tmp_path_factory.mktemp("nodes")
    procs = [start_node(root, f"node-{i}", hub.env()) for i in range(2)]  # the recipe's hub-node.env
    live: list[Node] = []
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda p: p.wait_ready(timeout=45), procs))
            keys = list(pool.map(lambda p: p.api_key(), procs))
        live += [Node(p, key, NodeDb(p.data_dir)) for p, key in zip(procs, keys, strict=True)]
        yield live  # a test that restarts a node puts the new process in its place
    finally:
        for proc in {id(p): p for p in [*procs, *(n.proc for n in live)]}.values():
            with contextlib.suppress(Exception):
                proc.stop(signal.SIGINT)
