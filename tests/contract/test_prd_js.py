"""The PRD's and the KV spec's JavaScript (``js/prd.mjs``) with the official NATS client, run by node."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.contract.conftest import CAMERA, DEMO_ORG, JS_DIR, OTHER_ENTITY, OTHER_ORG, Credential, Demo

pytestmark = pytest.mark.timeout(150)

LEVELS = ["HIGH_THREAT", "LOW_THREAT", "MODERATE_THREAT"]


async def run_examples(node: Path, demo: Demo, cred: Credential, reader: str) -> dict[str, Any]:
    env = {
        **os.environ,
        "NATS_URL": demo.nats_url,
        "NATS_SEED": cred.seed,
        "NATS_INBOX": cred.inbox,
        "READER": reader,
        "HTTP_URL": demo.proc.url,
        "API_KEY": cred.api_key,
        "ORG": DEMO_ORG,
        "CAMERA": CAMERA,
        "ENTITIES": ",".join(demo.entities),
        "OTHER_ENTITY": OTHER_ENTITY,
        "OTHER_ORG": OTHER_ORG,
    }
    proc = await asyncio.create_subprocess_exec(
        str(node), "prd.mjs", cwd=JS_DIR, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 90)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        raise AssertionError(f"prd.mjs did not finish: {err.decode()[-2000:]}") from None
    assert proc.returncode == 0, f"prd.mjs failed ({proc.returncode}):\n{err.decode()[-3000:]}"
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


def _common(result: dict[str, Any], entities: int) -> None:
    p1 = result["pattern1"]
    assert p1["events"] > 0 and p1["detections"] > 0, p1
    assert result["pattern2"]["read"] == entities == result["kvspec"]["cards"]
    assert result["pattern3"]["updates"] == 2 and set(result["pattern3"]["keys"]) == {CAMERA}
    assert result["pattern4"]["replayed"] > 0
    queries = result["queries"]
    assert queries["state"] == CAMERA == queries["watched"] and queries["events"] >= 1
    assert result["kvspec"]["distribution"] == LEVELS  # the camera's threat_distribution: all three levels


async def test_fabric_reader_runs_the_prd_javascript(node_client: Path, demo: Demo) -> None:
    result = await run_examples(node_client, demo, demo.fabric, "fabric")
    _common(result, result["entities"])
    assert result["entities"] >= len(demo.entities) + 1  # every organisation's keys (the other one's too)


async def test_organisation_reader_runs_the_documented_equivalents(node_client: Path, demo: Demo) -> None:
    result = await run_examples(node_client, demo, demo.org, "org")
    _common(result, len(demo.entities))
    assert set(result["pattern1"]["orgs"]) == {DEMO_ORG}
    refused = result["refused"]
    assert "permissions violation" in str(refused["otherKey"]).lower(), refused
    assert refused["otherSubject"] and refused["sharedConsumer"] and refused["ownConsumer"], refused
