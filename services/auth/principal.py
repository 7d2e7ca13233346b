"""Who is calling: the ``Principal`` every request carries, and what it may do.

Roles: ``viewer`` reads; ``operator`` also sends commands and acknowledges alerts;
``admin`` also manages users, keys, organisations, entities and the NATS console's
destructive actions. API keys carry scopes (``read``, ``commands``, ``admin``) and may be
limited to one organisation. Non-admin users see only their organisations.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Role = Literal["admin", "operator", "viewer"]
Permission = Literal["read", "commands", "admin"]

ROLES: tuple[str, ...] = ("viewer", "operator", "admin")
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "operator": frozenset({"read", "commands"}),
    "admin": frozenset({"read", "commands", "admin"}),
}


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """The authenticated caller (or the anonymous one)."""

    kind: Literal["anonymous", "user", "apikey"]
    id: str = ""
    name: str = ""
    role: str = "viewer"
    permissions: frozenset[str] = frozenset()
    org_ids: frozenset[str] | None = frozenset()  # None = every organisation
    session_id: str = ""

    @property
    def authenticated(self) -> bool:
        """True for users and API keys."""
        return self.kind != "anonymous"

    @property
    def label(self) -> str:
        """How the audit log names this caller."""
        if self.kind == "user":
            return self.name or self.id
        if self.kind == "apikey":
            return f"apikey:{self.name or self.id}"
        return "anonymous"

    def can(self, permission: str) -> bool:
        """Has this permission somewhere (in at least one visible organisation)."""
        return permission in self.permissions

    def sees(self, org_id: str) -> bool:
        """May see this organisation's data."""
        return self.org_ids is None or org_id in self.org_ids

    def can_in(self, permission: str, org_id: str) -> bool:
        """Has ``permission`` in ``org_id``."""
        return self.can(permission) and self.sees(org_id)

    @property
    def visible_orgs(self) -> list[str] | None:
        """Organisation ids to filter lists by (``None`` = no filter)."""
        return None if self.org_ids is None else sorted(self.org_ids)

    @property
    def is_global_admin(self) -> bool:
        """Admin over every organisation (may create organisations, manage users)."""
        return self.can("admin") and self.org_ids is None


ANONYMOUS = Principal(kind="anonymous")


def user_principal(user_id: str, email: str, role: str, org_ids: list[str], session_id: str = "") -> Principal:
    """The principal of a signed-in user."""
    return Principal(
        kind="user",
        id=user_id,
        name=email,
        role=role,
        permissions=ROLE_PERMISSIONS.get(role, frozenset()),
        org_ids=None if role == "admin" else frozenset(org_ids),
        session_id=session_id,
    )


def key_principal(key_id: str, name: str, scopes: list[str], org_id: str | None) -> Principal:
    """The principal of an API key."""
    perms = frozenset(s for s in scopes if s in ("read", "commands", "admin"))
    if perms:
        perms = perms | {"read"}
    role = "admin" if "admin" in perms else "operator" if "commands" in perms else "viewer"
    return Principal(
        kind="apikey",
        id=key_id,
        name=name,
        role=role,
        permissions=perms,
        org_ids=None if org_id is None else frozenset({org_id}),
    )
