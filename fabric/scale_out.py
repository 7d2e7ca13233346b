"""What the embedded server's configuration adds for scale-out: its domain, a system account, a leaf remote.

* ``NATS_DOMAIN`` gives the embedded server's JetStream a domain of its own: an edge box
  keeps its streams and KV apart from the hub's, and the hub reaches them as
  ``$JS.{domain}.API`` (stream sourcing).
* ``NATS_LEAF_REMOTE`` joins it to a hub as a **leaf node**, with ``constellation.>`` and
  ``$KV.>`` denied both ways: the hub's and the edge's streams define the same subjects,
  and without the deny rules every message would be stored on both sides, and a publish
  could be acknowledged by the other side's stream (``../shared/reference/nats-edge.md``).
  Sourcing goes through the JetStream API, which the deny rules leave alone.
* A ``SYS`` account with one user (password derived from the instance secret) lets the
  server process read the server's own status (``$SYS.REQ.SERVER.PING.*``: JetStream,
  leaf connections) without a monitoring port.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass

SYSTEM_ACCOUNT = "SYS"
SYSTEM_USER = "overwatch-sys"
DENIED_OVER_LEAF = ("constellation.>", "$KV.>")


def system_password(secret: str) -> str:
    """The embedded server's system-account password (derived, never stored)."""
    return hmac.new(secret.encode(), b"nats-system", hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class ScaleOutConfig:
    """The embedded server's scale-out settings (all empty: a single box, as before)."""

    domain: str = ""
    leaf_remotes: tuple[str, ...] = ()
    leaf_creds: str = ""
    system_password: str = ""

    @property
    def server_name(self) -> str:
        """Unique per edge (a hub sees every leaf's name); ``overwatch`` on a single box."""
        return f"overwatch-{self.domain}" if self.domain else "overwatch"

    def blocks(self) -> list[str]:
        """Configuration lines: the system account and the leaf remote, when configured."""
        lines: list[str] = []
        if self.system_password:
            users = [{"user": SYSTEM_USER, "password": self.system_password}]
            lines += [
                "accounts " + json.dumps({SYSTEM_ACCOUNT: {"users": users}}),
                f"system_account: {SYSTEM_ACCOUNT}",
            ]
        if self.leaf_remotes:
            remote: dict[str, object] = {
                "urls": list(self.leaf_remotes),
                "deny_exports": list(DENIED_OVER_LEAF),
                "deny_imports": list(DENIED_OVER_LEAF),
            }
            if self.leaf_creds:
                remote["credentials"] = self.leaf_creds
            # Reconnect quickly when the link returns (the default waits a second between tries).
            lines.append("leafnodes " + json.dumps({"reconnect": "1s", "remotes": [remote]}))
        return lines
