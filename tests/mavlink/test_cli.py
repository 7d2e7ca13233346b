"""``overwatch mavlink`` as a user runs it: its own process, device credentials, an embedded NATS server with auth."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.runtime import Runtime
from db import commands as commands_db
from services.mavlink.emulator import Emulator
from services.nats_auth import inbox_prefix
from services.schemas import CommandCreate, OrgCreate
from tests.helpers import eventually

OVERWATCH = str(Path(sys.executable).parent / "overwatch")


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_bridge_process_with_device_credentials(make_runtime: Any, tmp_path: Path) -> None:
    rt: Runtime = await make_runtime(nats_url="", nats_port=-1)  # embedded server: only known users get in
    assert rt.nats_server is not None and rt.services.nats_auth is not None
    await rt.services.registry.create_org(OrgCreate(org_id="field", name="Field team", org_type="military"))
    key = await rt.services.apikeys.create("tests", "gcs-bridge", ["read", "commands"], "field", nats=True)
    await rt.services.nats_auth.apply()
    port = _free_udp_port()
    env = {
        **os.environ,
        "NATS_URL": rt.nats_server.url,
        "NATS_NKEY_SEED_STR": key.nats_seed or "",
        "NATS_INBOX_PREFIX": inbox_prefix(key.key_id),
        "MAVLINK_ORG": "field",
        "OVERWATCH_DATA_DIR": str(tmp_path / "bridge-data"),
    }
    log = tmp_path / "bridge.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [OVERWATCH, "mavlink", "--listen", f"udp:127.0.0.1:{port}", "--env-file", "/nonexistent"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    vehicle = Emulator(("127.0.0.1", port), sysid=12)
    await vehicle.start()
    try:
        cache = rt.services.state_cache
        await eventually(
            lambda: (cache.get("mav-12") or {}).get("vehicle_status", {}).get("link"),
            timeout=20,
            what=f"vehicle state through the bridge process\n{log.read_text(errors='replace')}",
        )
        sent = await rt.services.commands.send("field", "mav-12", CommandCreate(command="arm"))

        async def completed() -> bool:
            row = await commands_db.get_command(rt.db, sent.command_id)
            return row is not None and row.status == "completed"

        await eventually(completed, timeout=10, what="arm completed through the bridge process")
        assert vehicle.armed
    finally:
        await vehicle.stop()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 10)
    text = log.read_text(errors="replace")
    assert code == 0, text
    assert "Permissions Violation" not in text and "registered; publishing" in text


def test_bad_configuration_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from app.cli import main

    for name in [k for k in os.environ if k.startswith("MAVLINK_")]:
        monkeypatch.delenv(name)
    args = ["mavlink", "--env-file", str(tmp_path / "none.env")]
    assert main(args) == 78
    assert "MAVLINK_ORG is required" in capsys.readouterr().err
    monkeypatch.setenv("MAVLINK_LISTEN", "tcp:0.0.0.0:14550")
    assert main([*args, "--org", "demo"]) == 78
    err = capsys.readouterr().err
    assert "MAVLINK_LISTEN" in err and "only UDP can be listened on" in err
    assert main([*args, "--org", "demo", "--listen", "udp:127.0.0.1:1", "--command-retries", "99"]) == 78
    assert "MAVLINK_COMMAND_RETRIES must be 0..20" in capsys.readouterr().err
