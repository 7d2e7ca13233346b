"""``COT_URL`` and ``COT_LISTEN`` parsing (no sockets; the settings validate with it at start)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple
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
    allowed = "one of " + ", ".join(OUT_SCHEMES)
    for entry in _entries(value, "COT_URL", OUT_SCHEMES, allowed, "udp://239.2.3.1:6969", port_zero=False):
        proto = default_proto
        query = parse_qs(entry.query)
        if "tak_proto" in query:
            proto = _proto(query["tak_proto"][0], f"COT_URL {entry.raw!r}")
        out.append(OutUrl(entry.raw.split("?", 1)[0], entry.scheme, entry.host, entry.port, proto))
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
    return [
        ListenUrl(e.raw, e.scheme, e.host, e.port)
        for e in _entries(value, "COT_LISTEN", LISTEN_SCHEMES, "udp or tcp", "udp://0.0.0.0:4242", port_zero=True)
    ]


class _Entry(NamedTuple):
    raw: str
    scheme: str
    host: str
    port: int
    query: str


def _entries(
    value: str, setting: str, schemes: tuple[str, ...], allowed: str, example: str, port_zero: bool
) -> Iterator[_Entry]:
    """The comma-separated URLs of ``setting``, each with a known scheme, a host and a port (0 if ``port_zero``)."""
    for raw in (v.strip() for v in value.split(",")):
        if not raw:
            continue
        parsed = urlparse(raw)
        scheme = parsed.scheme.lower()
        if scheme not in schemes:
            raise CotConfigError(f"{setting} {raw!r}: scheme must be {allowed}")
        try:
            port = parsed.port
        except ValueError:
            port = None
        if not parsed.hostname or port is None or (port == 0 and not port_zero):
            raise CotConfigError(f"{setting} {raw!r}: needs a host and a port, e.g. {example}")
        yield _Entry(raw, scheme, parsed.hostname, port, parsed.query)
