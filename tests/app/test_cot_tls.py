"""A tls:// destination with a client certificate (PYTAK_TLS_*), reached after it comes up late,
and reconnected with backoff when it drops the connection — the picture is sent again each time."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lxml import etree

from app.runtime import Runtime
from core import topology
from tests.app.test_cot_out import tcp_port
from tests.helpers import eventually, seed, telemetry


def _cert(name: str, key: Any, issuer: tuple[x509.Name, Any] | None, ca: bool = False) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, issuer_key = issuer or (subject, key)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName(name)]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(folder: Path) -> dict[str, Path]:
    """A CA, a TAK server certificate for 127.0.0.1 and an Overwatch client certificate (PEM files)."""
    out: dict[str, Path] = {}
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test-ca", ca_key, None, ca=True)
    for name in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(name, key, (ca.subject, ca_key))
        (folder / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (folder / f"{name}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        out[name], out[f"{name}_key"] = folder / f"{name}.pem", folder / f"{name}.key"
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out["ca"] = folder / "ca.pem"
    return out


@pytest.mark.timeout(60)
async def test_tls_destination_with_a_client_certificate_and_reconnects(make_runtime: Any, tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    port = tcp_port()
    rt: Runtime = await make_runtime(
        cot_url=f"tls://127.0.0.1:{port}",
        pytak_tls_client_cert=str(pki["client"]),
        pytak_tls_client_key=str(pki["client_key"]),
        pytak_tls_client_cafile=str(pki["ca"]),
        offline_after=30.0,
    )
    await seed(rt, org_id="org1", entities=2)
    for i in range(2):
        await rt.js.publish(topology.telemetry_subject("org1", f"ent-{i}"), telemetry(lat=37.0 + i / 100))
    await eventually(lambda: all((rt.services.state_cache.get(f"ent-{i}") or {}).get("is_live") for i in range(2)))
    gateway: Any = next(w for w in rt.workers.workers if w.name == "cot")
    link = gateway.links[0]
    await eventually(lambda: link.stats.errors >= 1, what="first attempts fail: nobody listens yet")

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki["ca"]))
    ctx.load_cert_chain(str(pki["server"]), str(pki["server_key"]))
    ctx.verify_mode = ssl.CERT_REQUIRED  # a TAK server's streaming port wants the client's certificate
    sessions: list[dict[str, Any]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        cert = writer.get_extra_info("peercert")
        session: dict[str, Any] = {"peer": dict(x[0] for x in cert["subject"]), "uids": set()}
        sessions.append(session)
        buf = b""
        try:
            while chunk := await reader.read(65536):
                buf += chunk
                while b"</event>" in buf:
                    event, _, buf = buf.partition(b"</event>")
                    session["uids"].add(etree.fromstring(event + b"</event>").get("uid"))
                    if len(sessions) == 1 and session["uids"] >= {"ent-0", "ent-1"}:
                        writer.close()  # drop the first connection once it had the picture
                        return
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", port, ssl=ctx)
    try:
        await eventually(
            lambda: len(sessions) >= 2 and sessions[1]["uids"] >= {"ent-0", "ent-1"},
            timeout=40,
            what="the picture after a reconnect",
        )
        assert sessions[0]["peer"]["commonName"] == "client"
        assert sessions[0]["uids"] >= {"ent-0", "ent-1"}
        assert link.stats.connects >= 2
    finally:
        server.close()
