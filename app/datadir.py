"""The data directory and the instance secret: what every command of a node needs before anything else.

Kept apart from ``app.runtime`` so that small commands (``overwatch apikey``, ``overwatch user``)
start without importing the server, NATS and the web stack.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from core.settings import Settings

log = logging.getLogger("overwatch")


class StartupError(Exception):
    """The server cannot start; the message says why in one line."""


def ensure_data_dir(path: Path) -> None:
    """Create the data directory private to the service user (0700) and prove it is writable.

    It holds the database (password hashes, sessions, audit), the instance secret and
    the NATS configuration: nobody else on the box has anything to read there.
    """
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.stat().st_mode & 0o077:
            try:
                path.chmod(0o700)
            except PermissionError:
                log.warning("data directory %s is readable by others and not ours to chmod 700", path)
        probe = path / ".write-test"
        probe.write_text("ok", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        raise StartupError(f"data directory {path} is not writable: {exc.strerror or exc}") from None


def load_or_create_secret(settings: Settings) -> str:
    """``OVERWATCH_SECRET_KEY`` if set, else the one generated once into ``<data>/secret``."""
    if settings.secret_key:
        return settings.secret_key
    path = settings.data_path / "secret"
    if path.is_file():
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)  # written by an older version, or copied in
        return path.read_text(encoding="utf-8").strip()
    value = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value)
    log.info("generated instance secret in %s", path)
    return value
