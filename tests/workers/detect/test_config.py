"""``overwatch detect`` fails fast, with a message naming the problem, on unusable configuration."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from core.settings import ConfigError
from tests.conftest import OVERWATCH
from workers.detect.config import EXIT_CONFIG, load_detect_settings

pytestmark = pytest.mark.timeout(60)

GOOD = {"CONSTELLATION_ORG_ID": "org1", "CONSTELLATION_ENTITY_ID": "cam-1", "NATS_URL": "nats://127.0.0.1:1"}


def detect(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the real command with only the given configuration."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CONSTELLATION_", "NATS_", "DETECT_"))}
    return subprocess.run(
        [OVERWATCH, "detect", *args], env=clean | env, cwd=cwd, capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        ({}, (), "CONSTELLATION_ORG_ID is required"),
        (GOOD | {"CONSTELLATION_ENTITY_ID": "cam 1; rm -rf"}, (), "CONSTELLATION_ENTITY_ID 'cam 1; rm -rf'"),
        (GOOD, ("--org", "a.b"), "CONSTELLATION_ORG_ID 'a.b'"),
        (GOOD | {"DETECT_SOURCE": "ftp://example/stream"}, (), "ftp"),
        (GOOD, ("--source", "/nonexistent/video.mp4"), "not found"),
        (GOOD, ("--model", "/nonexistent/model.onnx"), "model"),
        (GOOD | {"DETECT_CONF": "1.5"}, (), "DETECT_CONF must be between 0 and 1"),
        (GOOD | {"DETECT_THREADS": "many"}, (), "DETECT_THREADS"),
        (GOOD | {"NATS_AUTH_TOKEN": "t", "NATS_USER": "u", "NATS_PASSWORD": "p"}, (), "at most one NATS auth"),
        (GOOD | {"DETECT_KV_MODE": "partial"}, (), "DETECT_KV_MODE must be full or off"),
    ],
)
def test_bad_configuration_exits_78_with_a_clear_message(
    env: dict[str, str], args: tuple[str, ...], message: str, tmp_path: Path
) -> None:
    result = detect(env, *args, cwd=tmp_path)
    assert result.returncode == EXIT_CONFIG, result.stderr
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_bad_threat_table_and_labels_fail_fast(tmp_path: Path) -> None:
    table = tmp_path / "threats.json"
    table.write_text('{"weapon": "APOCALYPTIC"}')
    result = detect(GOOD | {"DETECT_THREAT_TABLE": str(table)}, cwd=tmp_path)
    assert result.returncode == EXIT_CONFIG and "APOCALYPTIC" in result.stderr, result.stderr
    labels = tmp_path / "labels.txt"
    labels.write_text("only-one-class\n")
    result = detect(GOOD | {"DETECT_LABELS": str(labels)}, cwd=tmp_path)
    assert result.returncode == EXIT_CONFIG and "label" in result.stderr.lower(), result.stderr


def test_flags_override_environment_and_secrets_stay_hidden() -> None:
    settings = load_detect_settings(
        {"entity_id": "cam-9", "conf": 0.4},
        environ=GOOD | {"NATS_AUTH_TOKEN": "s3cret", "SIGINT_MOVEMENT_THRESHOLD": "0.2"},
        dotenv=None,
    )
    assert settings.entity_id == "cam-9" and settings.conf == 0.4 and settings.movement == 0.2
    assert "s3cret" not in repr(settings)
    with pytest.raises(ConfigError, match="DEVICE_ID"):
        load_detect_settings(environ=GOOD | {"DEVICE_ID": "../etc"}, dotenv=None)
