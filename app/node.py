"""The node id: one stable name per data directory, kept across restarts.

Per-node JetStream consumers (the projections in ``workers/projection.py``) are named
after it, so a restarted node finds its own again and two nodes never share one.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

NODE_ID_FILE = "node-id"
NODE_ID_RE = re.compile(r"^[a-z0-9]{4,32}$")  # a consumer-name and subject-token safe id


class NodeIdError(Exception):
    """The node-id file exists but does not hold a valid id."""


def load_or_create_node_id(data_dir: Path) -> str:
    """The node id stored in ``<data_dir>/node-id``; generated once (``n`` + 10 hex digits) if missing.

    Written private and in one step (a temporary file renamed into place), so a crash
    never leaves half an id behind. A file someone edited into an invalid id is an error,
    not silently replaced: the node's consumers and cursors are named after it.
    """
    path = data_dir / NODE_ID_FILE
    if path.is_file():
        value = path.read_text(encoding="utf-8").strip()
        if not NODE_ID_RE.match(value):
            raise NodeIdError(f"{path} holds {value[:40]!r}, not a node id ([a-z0-9]{{4,32}})")
        return value
    value = "n" + secrets.token_hex(5)
    tmp = path.with_name(f"{NODE_ID_FILE}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value + "\n")
    os.replace(tmp, path)
    return value
