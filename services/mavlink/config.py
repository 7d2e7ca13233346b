"""Settings of the MAVLink bridge (``overwatch mavlink``): flags > environment > ``.env`` > defaults.

Declared like the server's settings (``MAVLINK_SETTINGS``) and documented in the
README's configuration table (a test checks). A bad value stops the bridge at once
with a message naming the variable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from core.settings import ConfigError, SettingSpec, raw_values, redacted_repr
from core.topology import TOKEN_RE

EXIT_CONFIG = 78  # EX_CONFIG, like ``overwatch detect``

MAVLINK_SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("org_id", "MAVLINK_ORG", "", "Organisation new vehicles are registered in (required)"),
    SettingSpec(
        "listen", "MAVLINK_LISTEN", "udp:0.0.0.0:14550", "UDP endpoints to listen on (`udp:HOST:PORT`, comma list)"
    ),
    SettingSpec(
        "connect", "MAVLINK_CONNECT", "", "Endpoints to connect to: `udp:HOST:PORT` or `tcp:HOST:PORT` (comma list)"
    ),
    SettingSpec("serial", "MAVLINK_SERIAL", "", "Serial devices, `/dev/ttyUSB0[:BAUD]` (comma list; default 57600)"),
    SettingSpec("sysid", "MAVLINK_SYSID", 255, "The bridge's own system id (its GCS HEARTBEAT and commands)"),
    SettingSpec("compid", "MAVLINK_COMPID", 190, "The bridge's own component id (190 = mission planner)"),
    SettingSpec(
        "mapping", "MAVLINK_MAPPING", "", "JSON or TOML file: names per system id, or bindings to existing entities"
    ),
    SettingSpec("entity_prefix", "MAVLINK_ENTITY_PREFIX", "mav-", "Entity id of a new vehicle: prefix + system id"),
    SettingSpec("comm_lost_after", "MAVLINK_COMM_LOST_AFTER", 3.0, "Seconds without HEARTBEAT before Comm lost"),
    SettingSpec("command_timeout", "MAVLINK_COMMAND_TIMEOUT", 1.0, "Seconds to wait for COMMAND_ACK before resending"),
    SettingSpec("command_retries", "MAVLINK_COMMAND_RETRIES", 3, "Resends before a command fails with no response"),
    SettingSpec(
        "progress_timeout", "MAVLINK_PROGRESS_TIMEOUT", 30.0, "Seconds after IN_PROGRESS to wait for the final ACK"
    ),
    SettingSpec(
        "publish_interval",
        "MAVLINK_PUBLISH_INTERVAL",
        0.02,
        "Seconds over which one vehicle's messages are merged into one NATS message",
    ),
    SettingSpec("nats_url", "NATS_URL", "", "NATS server(s); unset: this box's embedded server with its own user"),
    SettingSpec("nats_token", "NATS_AUTH_TOKEN", "", "Token auth (at most one auth method)"),
    SettingSpec("nats_user", "NATS_USER", "", "User/password auth: the user"),
    SettingSpec("nats_password", "NATS_PASSWORD", "", "User/password auth: the password"),
    SettingSpec("nats_creds", "NATS_CREDS_FILE", "", "JWT credentials file"),
    SettingSpec("nats_nkey_seed_file", "NATS_NKEY_SEED_FILE", "", "NKey seed file (permissions must be 0600)"),
    SettingSpec("nats_nkey_seed", "NATS_NKEY_SEED_STR", "", "NKey seed string (starts with `S`)"),
    SettingSpec(
        "nats_inbox_prefix", "NATS_INBOX_PREFIX", "", "Reply-inbox prefix of device credentials (`_INBOX.<key id>`)"
    ),
    SettingSpec("nats_tls_ca", "NATS_TLS_CA", "", "CA bundle or the server's own certificate to verify a TLS server"),
    SettingSpec(
        "nats_tls_verify_hostname",
        "NATS_TLS_VERIFY_HOSTNAME",
        True,
        "Check the server certificate's names (false: trust exactly `NATS_TLS_CA`, any name)",
    ),
)

_LINK_RE = re.compile(r"^(udp|tcp):([^:\s]+|\[[0-9a-fA-F:]+\]):(\d{1,5})$")
_SERIAL_RE = re.compile(r"^(/[^:\s]+)(?::(\d{3,7}))?$")


class LinkSpec(msgspec.Struct, frozen=True):
    """One link: ``udp`` listen/connect, ``tcp`` connect or ``serial``."""

    kind: str  # udp-listen | udp-connect | tcp | serial
    host: str = ""
    port: int = 0
    device: str = ""
    baud: int = 57600

    @property
    def label(self) -> str:
        """How logs, counters and the state name the link."""
        if self.kind == "serial":
            return f"serial:{self.device}:{self.baud}"
        scheme = "tcp" if self.kind == "tcp" else "udp"
        verb = "listen " if self.kind == "udp-listen" else ""
        return f"{verb}{scheme}:{self.host}:{self.port}"


def parse_link(text: str, kind: str) -> LinkSpec:
    """``udp:HOST:PORT`` / ``tcp:HOST:PORT`` (``kind`` listen or connect) or a serial device."""
    text = text.strip()
    if kind == "serial":
        match = _SERIAL_RE.match(text)
        if not match:
            raise ValueError(f"{text!r} is not a serial device path (/dev/ttyUSB0[:BAUD])")
        return LinkSpec("serial", device=match.group(1), baud=int(match.group(2) or 57600))
    match = _LINK_RE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not udp:HOST:PORT or tcp:HOST:PORT")
    scheme, host, port = match.group(1), match.group(2).strip("[]"), int(match.group(3))
    if not 0 <= port <= 65535:
        raise ValueError(f"{text!r}: port must be 0..65535")
    if kind == "listen":
        if scheme != "udp":
            raise ValueError(f"{text!r}: only UDP can be listened on (use --connect tcp:HOST:PORT)")
        return LinkSpec("udp-listen", host, port)
    if port == 0:
        raise ValueError(f"{text!r}: a port to connect to is required")
    return LinkSpec("udp-connect" if scheme == "udp" else "tcp", host, port)


class MavlinkSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Configuration of one bridge; see ``MAVLINK_SETTINGS``."""

    org_id: str = ""
    listen: str = "udp:0.0.0.0:14550"
    connect: str = ""
    serial: str = ""
    sysid: int = 255
    compid: int = 190
    mapping: str = ""
    entity_prefix: str = "mav-"
    comm_lost_after: float = 3.0
    command_timeout: float = 1.0
    command_retries: int = 3
    progress_timeout: float = 30.0
    publish_interval: float = 0.02
    nats_url: str = ""
    nats_token: str = ""
    nats_user: str = ""
    nats_password: str = ""
    nats_creds: str = ""
    nats_nkey_seed_file: str = ""
    nats_nkey_seed: str = ""
    nats_inbox_prefix: str = ""
    nats_tls_ca: str = ""
    nats_tls_verify_hostname: bool = True

    @property
    def links(self) -> list[LinkSpec]:
        """Every configured link, listen first."""
        out = [parse_link(t, "listen") for t in self.listen.split(",") if t.strip()]
        out += [parse_link(t, "connect") for t in self.connect.split(",") if t.strip()]
        out += [parse_link(t, "serial") for t in self.serial.split(",") if t.strip()]
        return out

    @property
    def servers(self) -> list[str]:
        """NATS server URLs (empty: the local embedded server)."""
        return [u.strip() for u in self.nats_url.split(",") if u.strip()]

    def __repr__(self) -> str:
        return redacted_repr(self, {"nats_token", "nats_password", "nats_nkey_seed"})


def _env(name: str) -> str:
    return next(s.env for s in MAVLINK_SETTINGS if s.field == name)


def validate(s: MavlinkSettings, *, need_links: bool = True) -> None:
    """Raise ``ConfigError`` naming the variable for anything unusable."""
    if not s.org_id:
        raise ConfigError("MAVLINK_ORG is required (or --org): the organisation vehicles are registered in")
    if not TOKEN_RE.match(s.org_id):
        raise ConfigError(f"MAVLINK_ORG {s.org_id!r} must be 1–128 letters, digits, '-' or '_'")
    for field in ("listen", "connect", "serial"):
        try:
            for text in getattr(s, field).split(","):
                if text.strip():
                    parse_link(text, {"listen": "listen", "connect": "connect", "serial": "serial"}[field])
        except ValueError as exc:
            raise ConfigError(f"{_env(field)}: {exc}") from None
    if need_links and not s.links:
        raise ConfigError("no link: set MAVLINK_LISTEN, MAVLINK_CONNECT or MAVLINK_SERIAL")
    for field in ("sysid", "compid"):
        if not 1 <= getattr(s, field) <= 255:
            raise ConfigError(f"{_env(field)} must be 1..255, got {getattr(s, field)}")
    if not re.match(r"^[A-Za-z0-9_-]{0,100}$", s.entity_prefix):
        raise ConfigError(f"MAVLINK_ENTITY_PREFIX {s.entity_prefix!r} must be letters, digits, '-' or '_'")
    for field in ("comm_lost_after", "command_timeout", "progress_timeout", "publish_interval"):
        if getattr(s, field) <= 0:
            raise ConfigError(f"{_env(field)} must be positive, got {getattr(s, field)}")
    if not 0 <= s.command_retries <= 20:
        raise ConfigError(f"MAVLINK_COMMAND_RETRIES must be 0..20, got {s.command_retries}")
    if s.mapping and not Path(s.mapping).is_file():
        raise ConfigError(f"MAVLINK_MAPPING: file not found: {s.mapping}")
    auths = [
        _env(f)
        for f in ("nats_token", "nats_creds", "nats_nkey_seed_file", "nats_nkey_seed", "nats_user")
        if getattr(s, f)
    ]
    if len(auths) > 1:
        raise ConfigError(f"use at most one NATS auth method (got {', '.join(auths)})")
    if s.nats_user and not s.nats_password:
        raise ConfigError("NATS_USER needs NATS_PASSWORD")
    if s.nats_nkey_seed and not s.nats_nkey_seed.startswith("S"):
        raise ConfigError("NATS_NKEY_SEED_STR must be an NKey seed (it starts with 'S')")
    for field in ("nats_nkey_seed_file", "nats_creds", "nats_tls_ca"):
        path = getattr(s, field)
        if path and not Path(path).is_file():
            raise ConfigError(f"{_env(field)}: file not found: {path}")


def load_mavlink_settings(
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    dotenv: Path | None = Path(".env"),
    *,
    need_links: bool = True,
) -> MavlinkSettings:
    """Flags (``overrides``) > environment > ``.env`` > defaults, validated."""
    raw = raw_values(MAVLINK_SETTINGS, overrides, environ, dotenv)
    try:
        settings = msgspec.convert(raw, MavlinkSettings, strict=False)
    except msgspec.ValidationError as exc:
        field = str(exc).rpartition("$.")[2].strip("`' ")
        env_name = next((s.env for s in MAVLINK_SETTINGS if s.field == field), field)
        raise ConfigError(f"{env_name}: {exc}") from None
    validate(settings, need_links=need_links)
    return settings
