"""Contract fixtures: one ``overwatch serve --demo`` for the whole package, as an integrator meets it.

Credentials come from the CLI an administrator would use (``overwatch apikey create
--role viewer --nats``): a fabric reader, a reader of the demo organisation, and — to
prove the walls — a device of a second organisation that publishes while the demo
organisation's reader watches. The JavaScript examples need the official NATS client
from npm: it is installed once into the git-ignored ``tests/contract/js/node_modules``
(``npm ci`` from the committed lock file); without node, npm or the registry those tests
are skipped with the reason, as the browser tests are without Chromium.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from tests.conftest import OVERWATCH, ServerProcess, free_port
from tests.helpers import connect_once, eventually

JS_DIR = Path(__file__).parent / "js"
DEMO_ORG = "demo"
CAMERA = "demo-cam-1"
OTHER_ORG = "other"
OTHER_ENTITY = "other-1"


@dataclass
class Credential:
    """What ``overwatch apikey create`` printed: the API key, and the NATS seed and inbox prefix."""

    key_id: str
    api_key: str
    seed: str
    inbox: str
    org: str | None

    def connect_options(self) -> dict[str, Any]:
        """nats-py ``connect`` options: the only change an integrator makes to the PRD's code."""
        return {"nkeys_seed_str": self.seed, "inbox_prefix": self.inbox}


@dataclass
class Demo:
    """The running demo and everything the contract tests need to reach it."""

    proc: ServerProcess
    nats_url: str
    fabric: Credential
    org: Credential
    device: Credential  # of OTHER_ORG
    entities: list[str] = field(default_factory=list)  # the demo organisation's, from the REST registry
    started: float = 0.0


def _cli(proc: ServerProcess, *args: str) -> str:
    done = subprocess.run([OVERWATCH, *args], env=proc.env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def issue(proc: ServerProcess, name: str, role: str, org: str | None) -> Credential:
    """``overwatch apikey create --name N --role R --nats [--org O]``, parsed."""
    args = ["apikey", "create", "--name", name, "--role", role, "--nats"] + (["--org", org] if org else [])
    lines = dict(line.split(":", 1) for line in _cli(proc, *args).splitlines() if ":" in line)
    return Credential(
        key_id=lines["key_id"].strip(),
        api_key=lines["api key"].strip(),
        seed=lines["nats seed (keep secret)"].strip(),
        inbox=lines["nats inbox prefix"].strip(),
        org=org,
    )


async def _connect(url: str, cred: Credential, timeout: float = 10.0) -> nats.NATS:
    """Connect once the running server has picked the new key up (it polls the key table)."""
    connected: nats.NATS = await eventually(
        lambda: connect_once(url, connect_timeout=2, **cred.connect_options()),
        timeout=timeout,
        interval=0.2,
        what="a connection with the new key",
        retry_on=(Exception,),
    )
    return connected


@pytest.fixture(scope="package")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """``overwatch serve --demo`` on free ports, with reader and device credentials issued by the CLI.

    Package-scoped: the demo (its detector busy on a CPU) stops after the contract tests, not at the end of the
    session; under xdist one worker runs all of them (``pytest_xdist_make_scheduler`` in tests/conftest.py)."""
    data = tmp_path_factory.mktemp("contract") / "data"
    nats_port = free_port()
    proc = ServerProcess(data, env={"NATS_PORT": str(nats_port), "OVERWATCH_ADMIN_PASSWORD": "contract-admin-pw"})
    proc.args = ["--demo"]
    proc.start()
    try:
        proc.wait_ready(60)
        started = time.monotonic()
        admin = proc.api_key("admin")
        demo = Demo(
            proc=proc,
            nats_url=f"nats://127.0.0.1:{nats_port}",
            fabric=issue(proc, "fabric-reader", "viewer", None),
            org=issue(proc, "demo-reader", "viewer", DEMO_ORG),
            device=Credential("", "", "", "", OTHER_ORG),
            started=started,
        )
        asyncio.run(_prepare(demo, admin))
        yield demo
    finally:
        proc.stop()


async def _prepare(demo: Demo, admin: str) -> None:
    """A second organisation with a device; the demo organisation's entities; live camera data."""
    headers = {"Authorization": f"Bearer {admin}"}
    async with httpx.AsyncClient(base_url=demo.proc.url, headers=headers, timeout=10) as http:
        r = await http.post(
            "/api/v1/organizations", json={"org_id": OTHER_ORG, "name": "Other", "org_type": "civilian"}
        )
        assert r.status_code == 201, r.text
        body = {"entity_id": OTHER_ENTITY, "name": "Other cam", "entity_type": "isr_sensor"}
        r = await http.post(f"/api/v1/organizations/{OTHER_ORG}/entities", json=body)
        assert r.status_code == 201, r.text
    demo.device = issue(demo.proc, "other-device", "operator", OTHER_ORG)
    async with httpx.AsyncClient(base_url=demo.proc.url, headers=headers, timeout=10) as http:
        r = await http.get(f"/api/v1/organizations/{DEMO_ORG}/entities", params={"limit": 500})
        demo.entities = sorted(e["entity_id"] for e in r.json()["items"])
    for cred in (demo.fabric, demo.org, demo.device):
        nc = await _connect(demo.nats_url, cred)
        await nc.close()
    nc = await _connect(demo.nats_url, demo.fabric)
    try:
        kv = await nc.jetstream().key_value("CONSTELLATION_GLOBAL_STATE")

        async def tracking() -> bool:
            try:
                state = json.loads((await kv.get(CAMERA)).value or b"{}")
            except Exception:  # noqa: BLE001 - not written yet
                return False
            return bool(state.get("detections", {}).get("objects"))

        try:
            await eventually(tracking, timeout=40, interval=0.3, what="the demo camera tracking something")
        except AssertionError as exc:
            raise AssertionError(f"{exc}:\n{demo.proc.output()[-3000:]}") from None
    finally:
        await nc.close()


@pytest.fixture(scope="session")
def node_client() -> Path:
    """The official NATS JavaScript client installed from npm (skipped with the reason when it cannot be)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for the JavaScript contract tests (apt install nodejs npm)")
    lock = JS_DIR / "package-lock.json"
    stamp = JS_DIR / "node_modules" / ".overwatch-installed"
    wanted = hashlib.sha256(lock.read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != wanted:
        # Like the Makefile's .installed stamps: install again only when the lock file changed.
        try:
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=JS_DIR,
                capture_output=True,
                text=True,
                timeout=180,
            )
        except subprocess.TimeoutExpired:
            pytest.skip("npm ci did not finish within 180 s (is the npm registry reachable?)")
        if done.returncode != 0:
            pytest.skip(f"npm could not install the NATS JavaScript client (offline?): {done.stderr.strip()[-300:]}")
        stamp.write_text(wanted)
    return Path(node)
