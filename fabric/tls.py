"""TLS for the console (HTTPS) and the embedded NATS server.

Certificates come from ``OVERWATCH_TLS_CERT``/``OVERWATCH_TLS_KEY`` (and, for NATS's
own, ``NATS_TLS_CERT``/``NATS_TLS_KEY``), or with ``OVERWATCH_TLS_SELF_SIGNED`` from a
self-signed certificate generated once into ``<data>/tls/`` by the ``openssl``
command (the ``cryptography`` package is not a dependency, and Python's ``ssl``
cannot issue certificates). A pair that cannot be loaded stops the start with one
sentence naming the setting.

Local clients of the embedded NATS server (the server's own connection, ``overwatch
simulate``, the demo's detector) trust exactly the server's certificate
(``pinned_context``): they connect over loopback, where the certificate's names
(a public host name, say) need not match.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
from pathlib import Path

import msgspec

from core.settings import Settings

log = logging.getLogger("overwatch.tls")

SELF_SIGNED_DIR = "tls"
SELF_SIGNED_DAYS = 825  # the longest validity Apple platforms accept for a server certificate
RENEW_BEFORE = 30 * 86400  # seconds: a self-signed certificate this close to expiry is replaced
_DNS_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


class TlsError(Exception):
    """A certificate or key cannot be used (or generated); the message says which and why."""


class CertPair(msgspec.Struct, frozen=True):
    """A PEM certificate (chain) file and its private key file."""

    cert: Path
    key: Path


def check_pair(pair: CertPair, what: str) -> CertPair:
    """Load the pair into a server context once, so a bad file is a clear start-up error."""
    for path in (pair.cert, pair.key):
        if not path.is_file():
            raise TlsError(f"{what}: file not found: {path}")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(str(pair.cert), str(pair.key))
    except (ssl.SSLError, OSError) as exc:
        raise TlsError(f"{what}: cannot load {pair.cert} with {pair.key}: {exc}") from None
    return pair


def self_signed_names(settings: Settings) -> tuple[list[str], list[str]]:
    """DNS names and IP addresses a generated certificate is valid for: this box's, best effort."""
    dns = ["localhost"]
    ips = ["127.0.0.1", "::1"]
    host = socket.gethostname()
    for name in (host, socket.getfqdn()):
        if name and _DNS_RE.match(name) and name not in dns:
            dns.append(name)
    candidates = [settings.host, settings.nats_host]
    try:
        candidates += [str(info[4][0]) for info in socket.getaddrinfo(host, None)]
    except OSError:
        pass  # no resolvable host name: loopback names only
    for value in candidates:
        try:
            address = ipaddress.ip_address(value.split("%", 1)[0])
        except ValueError:
            continue
        if not address.is_unspecified and str(address) not in ips:
            ips.append(str(address))
    return dns, ips


def _openssl() -> str:
    found = shutil.which("openssl")
    if not found:
        raise TlsError(
            "OVERWATCH_TLS_SELF_SIGNED needs the openssl command to generate a certificate; "
            "install it, or give OVERWATCH_TLS_CERT and OVERWATCH_TLS_KEY"
        )
    return found


def _expires_soon(openssl: str, cert: Path) -> bool:
    result = subprocess.run(
        [openssl, "x509", "-checkend", str(RENEW_BEFORE), "-noout", "-in", str(cert)],
        capture_output=True,
        check=False,
        timeout=30,
    )
    return result.returncode != 0


def self_signed(directory: Path, dns: list[str], ips: list[str]) -> CertPair:
    """The self-signed pair in ``directory``; generated on first use and when it nears expiry.

    An ECDSA P-256 key (readable by the owner only) and a certificate for ``dns`` and
    ``ips``. Delete the directory to generate a new one (e.g. after a rename).
    """
    pair = CertPair(cert=directory / "cert.pem", key=directory / "key.pem")
    openssl = _openssl()
    if pair.cert.is_file() and pair.key.is_file() and not _expires_soon(openssl, pair.cert):
        return pair
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    san = ",".join([*(f"DNS:{n}" for n in dns), *(f"IP:{a}" for a in ips)])
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        command = [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            str(SELF_SIGNED_DAYS),
            "-subj",
            f"/CN={dns[-1] if len(dns) > 1 else 'localhost'}/O=Constellation Overwatch (self-signed)",
            "-addext",
            f"subjectAltName={san}",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "keyUsage=critical,digitalSignature",
            "-addext",
            "extendedKeyUsage=serverAuth",
        ]
        result = subprocess.run(command, capture_output=True, check=False, timeout=60)
        if result.returncode != 0:
            why = result.stderr.decode(errors="replace").strip().splitlines()
            raise TlsError(f"openssl could not generate a certificate: {why[-1] if why else result.returncode}")
        key.chmod(0o600)
        cert.chmod(0o644)
        # Key first: a crash between the two renames leaves a pair that fails the check and is regenerated.
        os.replace(key, pair.key)
        os.replace(cert, pair.cert)
    log.warning("generated a self-signed TLS certificate %s for %s", pair.cert, san)
    return pair


def http_cert(settings: Settings, create: bool = True) -> CertPair | None:
    """The HTTPS certificate: the configured pair, the self-signed one, or ``None`` (plain HTTP)."""
    if settings.tls_cert:
        return check_pair(CertPair(cert=Path(settings.tls_cert), key=Path(settings.tls_key)), "OVERWATCH_TLS_CERT")
    if not settings.tls_self_signed:
        return None
    directory = settings.data_path / SELF_SIGNED_DIR
    if not create:
        pair = CertPair(cert=directory / "cert.pem", key=directory / "key.pem")
        return pair if pair.cert.is_file() and pair.key.is_file() else None
    return check_pair(self_signed(directory, *self_signed_names(settings)), "OVERWATCH_TLS_SELF_SIGNED")


def nats_cert(settings: Settings, create: bool = True) -> CertPair | None:
    """The embedded NATS server's certificate (``None``: plaintext NATS)."""
    if not settings.embedded_nats or not settings.nats_tls:
        return None
    if settings.nats_tls_cert:
        return check_pair(CertPair(cert=Path(settings.nats_tls_cert), key=Path(settings.nats_tls_key)), "NATS_TLS_CERT")
    return http_cert(settings, create)


def pinned_context(cert: Path) -> ssl.SSLContext:
    """A client context that trusts exactly ``cert`` (for loopback connections to our own server).

    Host names are not checked: the peer is this box, and trust is pinned to the
    certificate file, not to any certificate authority.
    """
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
    ctx.check_hostname = False
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # a CA-issued leaf is trusted as is
    return ctx


def ca_context(cafile: str, check_hostname: bool = True) -> ssl.SSLContext:
    """A client context that verifies the server against ``cafile`` (a CA bundle or the server's certificate)."""
    if not check_hostname:
        return pinned_context(Path(cafile))
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # the server's own self-signed certificate works as is
    return ctx


def nats_tls_block(pair: CertPair) -> str:
    """The ``tls {}`` block of the embedded server: TLS required from every client."""
    return "\n".join(
        [
            "tls {",
            f"  cert_file: {_quote(pair.cert)}",
            f"  key_file: {_quote(pair.key)}",
            "  timeout: 2",
            "}",
        ]
    )


def _quote(path: Path) -> str:
    return json.dumps(str(path.resolve()))
