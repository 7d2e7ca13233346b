"""Vendored front-end files match the versions and hashes recorded in VERSIONS."""

from __future__ import annotations

import hashlib

from web.templating import STATIC_DIR


def test_vendored_files_match_versions_file() -> None:
    vendor = STATIC_DIR / "vendor"
    lines = [ln for ln in (vendor / "VERSIONS").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines
    for line in lines:
        parts = line.split()
        package, path, digest = parts[0], parts[-2], parts[-1]
        assert "@" in package
        assert hashlib.sha256((vendor / path).read_bytes()).hexdigest() == digest, path


def test_every_vendored_file_is_recorded_and_licensed() -> None:
    vendor = STATIC_DIR / "vendor"
    recorded = {
        ln.split()[-2] for ln in (vendor / "VERSIONS").read_text().splitlines() if ln and not ln.startswith("#")
    }
    shipped = {
        p.relative_to(vendor).as_posix()
        for p in vendor.rglob("*")
        if p.is_file() and p.name != "VERSIONS" and not p.name.startswith("LICENSE")
    }
    assert shipped == recorded
    for folder in {p.split("/")[0] for p in shipped}:
        assert list((vendor / folder).glob("LICENSE*")), f"{folder} ships without its license"
