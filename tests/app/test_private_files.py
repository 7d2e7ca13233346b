"""The data directory and what is in it are private to the service user; ``user list`` shows organisations."""

from __future__ import annotations

import argparse
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from app.admin_cmd import run_user
from app.runtime import Runtime
from core.settings import Settings


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_data_directory_and_files_are_private(make_runtime: Any, tmp_path: Path) -> None:
    data = tmp_path / "old-install"
    # As an older version (or a umask of 022) left them: readable by everyone on the box.
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    (data / "secret").write_text("0" * 64)
    (data / "secret").chmod(0o644)
    old = os.umask(0o022)
    try:
        rt: Runtime = await make_runtime(data_dir=str(data), nats_url="", nats_port=-1)
        await rt.services.apikeys.create("tests", "write-something", ["read"], None)
    finally:
        os.umask(old)
    db = rt.settings.db_path
    expected = {
        data: 0o700,
        data / "secret": 0o600,
        db: 0o600,
        db.with_name("overwatch.db-wal"): 0o600,
        db.with_name("overwatch.db-shm"): 0o600,
        rt.settings.nats_store_path: 0o700,
        rt.settings.nats_store_path / "nats-server.conf": 0o600,
    }
    assert {p: _mode(p) for p in expected} == expected
    assert rt.secret == "0" * 64  # fixed, not replaced


async def test_a_new_data_directory_is_private_under_a_permissive_umask(make_runtime: Any, tmp_path: Path) -> None:
    old = os.umask(0o000)
    try:
        rt: Runtime = await make_runtime(data_dir=str(tmp_path / "fresh" / "data"))
    finally:
        os.umask(old)
    data = rt.settings.data_path
    assert _mode(data) == 0o700
    assert _mode(data / "secret") == 0o600
    assert _mode(rt.settings.db_path) == 0o600
    assert _mode(rt.settings.db_path.with_name("overwatch.db-wal")) == 0o600


def test_user_list_prints_the_organisations_of_every_account(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(data_dir=str(tmp_path / "data"), admin_password="x" * 12)
    for email, role, orgs in (
        ("viewer@example.org", "viewer", ["org-b", "org-a"]),
        ("ops@example.org", "operator", ["org-a"]),
        ("lonely@example.org", "viewer", []),
        ("root@example.org", "admin", []),
    ):
        args = argparse.Namespace(action="create", email=email, role=role, org=orgs, name="", password_stdin=False)
        assert run_user(settings, args) == 0
    capsys.readouterr()
    assert run_user(settings, argparse.Namespace(action="list")) == 0
    lines = {line.split()[0]: line.split()[2] for line in capsys.readouterr().out.splitlines()}
    assert lines == {
        "viewer@example.org": "orgs=org-a,org-b",
        "ops@example.org": "orgs=org-a",
        "lonely@example.org": "orgs=-",
        "root@example.org": "orgs=*",
    }
