"""The bridge's documentation stays true: every MAVLINK_* setting in the README table and in docs/mavlink.md."""

from __future__ import annotations

import re
from pathlib import Path

from services.mavlink.config import MAVLINK_SETTINGS
from services.mavlink.protocol import RESULT_WORDS
from services.mavlink.vehicle import HANDLERS

ROOT = Path(__file__).resolve().parents[2]


def test_every_bridge_setting_is_in_the_readme_configuration_table() -> None:
    section = (ROOT / "README.md").read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = "\n".join(line for line in section.splitlines() if line.startswith("| `"))
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", rows))
    missing = [spec.env for spec in MAVLINK_SETTINGS if spec.env not in documented]
    assert not missing, f"missing from the README configuration table: {missing}"


def test_docs_mavlink_names_every_setting_message_and_result() -> None:
    doc = (ROOT / "docs" / "mavlink.md").read_text()
    names = [spec.env for spec in MAVLINK_SETTINGS if spec.env.startswith("MAVLINK_")]
    names += list(HANDLERS) + [w for w in RESULT_WORDS.values() if "ONLY" not in w]
    missing = [n for n in names if f"`{n}`" not in doc]
    assert not missing, f"missing from docs/mavlink.md: {missing}"
