"""``COT_URL`` and ``COT_LISTEN`` parsing (no sockets; the settings validate with it at start)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import parse_qs, urlparse

OUT_SCHEMES = ("udp", "udp+wo", "udp+broadcast", "udp+broadcast+wo", "tcp", "tcp+wo", "tls", "tls+wo")
LISTEN_SCHEMES = ("udp", "tcp")


class CotConfigError(ValueError):
    """A ``COT_URL`` / ``COT_LISTEN`` entry that cannot be used; the message names it."""


@dataclass(frozen=True)
class OutUrl:
    """One ``COT_URL`` destination."""

    url: str  # as configured, without the query
    scheme: str
    host: str
    port: int
    tak_proto: int  # 0 = CoT XML, 1 = TAK protocol v1

    @property
    def stream(self) -> bool:
        """TCP/TLS (length-delimited protobuf framing) rather than datagrams (mesh framing)."""
        return self.scheme.startswith(("tcp", "tls"))


def parse_out_urls(value: str, default_proto: int) -> list[OutUrl]:
    """``COT_URL`` (comma-separated) → destinations; ``?tak_proto=0|1`` overrides ``TAK_PROTO`` per URL."""
    out = []
    for raw in (v.strip() for v in value.split(",")):
        if not raw:
            continue
        parsed = urlparse(raw)
        scheme = parsed.scheme.lower()
        if scheme not in OUT_SCHEMES:
            raise CotConfigError(f"COT_URL {raw!r}: scheme must be one of {', '.join(OUT_SCHEMES)}")
        try:
            port = parsed.port
        except ValueError:
            port = None
        if not parsed.hostname or not port:
            raise CotConfigError(f"COT_URL {raw!r}: needs a host and a port, e.g. udp://239.2.3.1:6969")
        proto = default_proto
        query = parse_qs(parsed.query)
        if "tak_proto" in query:
            proto = _proto(query["tak_proto"][0], f"COT_URL {raw!r}")
        out.append(OutUrl(raw.split("?", 1)[0], scheme, parsed.hostname, port, proto))
    return out


def _proto(value: str, where: str) -> int:
    if value.strip() not in ("0", "1"):
        raise CotConfigError(f"{where}: tak_proto must be 0 (XML) or 1 (TAK protocol v1)")
    return int(value)


@dataclass(frozen=True)
class ListenUrl:
    """One ``COT_LISTEN`` entry."""

    url: str
    scheme: str
    host: str
    port: int

    @property
    def multicast(self) -> bool:
        """A multicast group to join."""
        try:
            return ipaddress.ip_address(self.host).is_multicast
        except ValueError:
            return False


def parse_listen_urls(value: str) -> list[ListenUrl]:
    """``COT_LISTEN`` (comma-separated ``udp://HOST:PORT`` / ``tcp://HOST:PORT``) → listeners."""
    out = []
    for raw in (v.strip() for v in value.split(",")):
        if not raw:
            continue
        parsed = urlparse(raw)
        scheme = parsed.scheme.lower()
        if scheme not in LISTEN_SCHEMES:
            raise CotConfigError(f"COT_LISTEN {raw!r}: scheme must be udp or tcp")
        try:
            port = parsed.port
        except ValueError:
            port = None
        if not parsed.hostname or port is None:
            raise CotConfigError(f"COT_LISTEN {raw!r}: needs a host and a port, e.g. udp://0.0.0.0:4242")
        out.append(ListenUrl(raw, scheme, parsed.hostname, port))
    return out
