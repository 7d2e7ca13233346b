"""The one-way layers are enforced by import-linter (contract in pyproject.toml).

``make test`` runs ``lint-imports`` on the tree; this test proves the contract has teeth:
a copy of the sources with one forbidden import (storage reaching up into a service)
makes it fail and name the offending import.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "db", "fabric", "services", "workers", "web", "app")
LINT = Path(sys.executable).with_name("lint-imports")


def _copy_sources(dest: Path) -> None:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")


def _lint(where: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(where)}
    return subprocess.run(
        [str(LINT), "--no-cache", "--config", str(where / "pyproject.toml")],
        cwd=where,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.timeout(180)
def test_a_forbidden_import_breaks_the_layers_contract(tmp_path: Path) -> None:
    _copy_sources(tmp_path)
    clean = _lint(tmp_path)
    assert clean.returncode == 0, clean.stdout[-2000:]
    victim = tmp_path / "db" / "alerts.py"
    victim.write_text(victim.read_text() + "\nimport services.registry  # storage must not know services\n")
    broken = _lint(tmp_path)
    assert broken.returncode != 0
    assert "db is not allowed to import services" in broken.stdout
    assert "db.alerts -> services.registry" in broken.stdout
