"""TLS: HTTPS with a certificate, Secure cookies, trusted proxies only, TLS on the embedded NATS server."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import nats
import pytest

from app.main import create_app
from app.runtime import Runtime, client_auth
from app.server import EmbeddedServer, http_config
from core import topology
from core.settings import ConfigError, Settings, load_settings
from fabric.client import close_quietly, connect
from fabric.tls import CertPair, ca_context, nats_cert, self_signed
from services.nats_auth import inbox_prefix
from tests.conftest import free_port
from tests.helpers import connect_once, eventually, seed, state, telemetry, wait_until

PASSWORD = "correct horse battery"
pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


@pytest.fixture
def cert(tmp_path: Path) -> CertPair:
    """A self-signed certificate for localhost and 127.0.0.1, made the way the server makes its own."""
    return self_signed(tmp_path / "tls", ["localhost"], ["127.0.0.1"])


class Served:
    """The app behind uvicorn with the production configuration (``http_config``)."""

    def __init__(self, runtime: Runtime, tls: CertPair | None, trusted_proxies: str = "") -> None:
        settings = msgspec.structs.replace(
            runtime.settings, host="127.0.0.1", port=free_port(), trusted_proxies=trusted_proxies
        )
        self.port = settings.port
        self.server = EmbeddedServer(http_config(create_app(runtime), settings, tls))
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Served:
        task = self.task = asyncio.create_task(self.server.serve())
        await eventually(lambda: self.server.started or task.done(), interval=0.02, what="the server")
        assert not task.done(), "server did not start"
        return self

    async def __aexit__(self, *_: object) -> None:
        self.server.should_exit = True
        if self.task:
            await asyncio.wait_for(self.task, 10)


def _cookie_attrs(response: httpx.Response, name: str) -> list[str]:
    header = next(h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}="))
    return [part.strip().lower() for part in header.split(";")]


async def test_https_verified_against_the_certificate_with_secure_cookies(runtime: Runtime, cert: CertPair) -> None:
    await runtime.services.users.create("tests", "ops@example.org", "operator", [], PASSWORD)
    async with Served(runtime, cert) as served:
        async with httpx.AsyncClient(verify=ca_context(str(cert.cert))) as client:
            page = await client.get(f"https://localhost:{served.port}/login")
            assert page.status_code == 200
            assert "secure" in _cookie_attrs(page, "ow_login_csrf")
            assert page.headers["strict-transport-security"] == "max-age=15552000"
            token = page.cookies["ow_login_csrf"]
            signed_in = await client.post(
                f"https://localhost:{served.port}/login",
                data={"email": "ops@example.org", "password": PASSWORD, "csrf_token": token},
            )
            assert signed_in.status_code == 303, signed_in.text
            assert {"secure", "httponly", "samesite=strict"} <= set(_cookie_attrs(signed_in, "ow_session"))
        # The system's CAs do not know a self-signed certificate; plain HTTP on the TLS port gets nothing.
        async with httpx.AsyncClient() as client:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.get(f"https://localhost:{served.port}/health/live")
            with pytest.raises(httpx.HTTPError):
                await client.get(f"http://127.0.0.1:{served.port}/health/live")


@pytest.mark.parametrize(
    ("trusted", "honoured"),
    [("", False), ("10.0.0.0/8, 192.168.1.7", False), ("127.0.0.1", True), ("127.0.0.0/8", True)],
)
async def test_forwarded_proto_counts_only_from_trusted_proxies(runtime: Runtime, trusted: str, honoured: bool) -> None:
    async with (
        Served(runtime, None, trusted_proxies=trusted) as served,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{served.port}") as client,
    ):
        plain = await client.get("/login")
        assert "secure" not in _cookie_attrs(plain, "ow_login_csrf")
        assert "strict-transport-security" not in plain.headers
        forwarded = await client.get("/login", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"})
        assert ("secure" in _cookie_attrs(forwarded, "ow_login_csrf")) is honoured
        assert ("strict-transport-security" in forwarded.headers) is honoured
        # X-Forwarded-For names the client only through a trusted proxy (rate limits, audit log).
        await client.post(
            "/login",
            data={"email": "nobody@example.org", "password": "wrong", "csrf_token": "form-token"},
            headers={"X-Forwarded-For": "203.0.113.9", "Cookie": "ow_login_csrf=form-token"},
        )
    rows = await runtime.db.fetch_rows("SELECT ip FROM audit_log WHERE action = 'auth.login' ORDER BY id DESC")
    assert rows and rows[0][0] == ("203.0.113.9" if honoured else "127.0.0.1")


def test_tls_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="OVERWATCH_TLS_CERT and OVERWATCH_TLS_KEY"):
        load_settings(environ={"OVERWATCH_TLS_CERT": "/x.pem"}, dotenv=None)
    with pytest.raises(ConfigError, match="NATS_TLS_CERT and NATS_TLS_KEY"):
        load_settings(environ={"NATS_TLS_KEY": "/x.pem"}, dotenv=None)
    with pytest.raises(ConfigError, match="OVERWATCH_TRUSTED_PROXIES: 'proxy.lan'"):
        load_settings(environ={"OVERWATCH_TRUSTED_PROXIES": "10.0.0.1,proxy.lan"}, dotenv=None)
    ok = load_settings(environ={"OVERWATCH_TRUSTED_PROXIES": " 10.0.0.1 , fd00::/8 "}, dotenv=None)
    assert ok.trusted_proxy_list == ["10.0.0.1", "fd00::/8"]


async def test_a_missing_certificate_stops_the_start_with_the_setting_named(make_runtime: Any, tmp_path: Path) -> None:
    from app.runtime import StartupError

    with pytest.raises(StartupError, match=r"OVERWATCH_TLS_CERT: file not found: .*nope\.pem"):
        await make_runtime(tls_cert=str(tmp_path / "nope.pem"), tls_key=str(tmp_path / "nope.key"))
    (tmp_path / "garbage.pem").write_text("not a certificate")
    with pytest.raises(StartupError, match="NATS_TLS_CERT: cannot load"):
        await make_runtime(
            nats_url="",
            nats_port=-1,
            nats_tls_cert=str(tmp_path / "garbage.pem"),
            nats_tls_key=str(tmp_path / "garbage.pem"),
        )


@pytest.fixture
async def tls_runtime(make_runtime: Any) -> AsyncIterator[Runtime]:
    """A runtime with the embedded NATS server and a first-run self-signed certificate."""
    rt: Runtime = await make_runtime(nats_url="", nats_port=-1, tls_self_signed=True)
    yield rt


async def test_self_signed_certificate_serves_https_and_nats_tls(tls_runtime: Runtime) -> None:
    rt = tls_runtime
    assert rt.http_tls is not None and rt.nats_tls == rt.http_tls
    assert rt.http_tls.cert == rt.settings.data_path / "tls" / "cert.pem"
    assert rt.http_tls.key.stat().st_mode & 0o777 == 0o600
    assert rt.nats_server is not None and rt.nats_server.url.startswith("tls://")
    # The server's own connection runs over TLS (pinned to its certificate) and everything is ready.
    checks = await rt.services.health.readiness()
    assert all(c["ok"] for c in checks.values()), checks
    assert rt.nc is not None and rt.nc.connected_url is not None and rt.nc.connected_url.scheme == "tls"
    # A second start reuses the certificate instead of making a new one.
    assert nats_cert(rt.settings, create=False) == rt.nats_tls
    # A local tool (overwatch simulate) finds the same trust.
    local = await connect([rt.nats_server.url], name="tool", timeout=5, **client_auth(rt.settings))
    await close_quietly(local)


async def test_a_device_connects_over_tls_and_plaintext_is_refused(tls_runtime: Runtime) -> None:
    rt = tls_runtime
    assert rt.nats_server is not None and rt.nats_tls is not None
    (a1,) = await seed(rt, org_id="orga", entities=1, prefix="a")
    key = await rt.services.apikeys.create("tests", "cam", ["read"], "orga", nats=True)
    assert key.nats_seed
    manager = rt.services.nats_auth
    assert manager is not None
    await manager.apply()
    # A device that trusts the box's certificate (copied from <data>/tls/cert.pem), names checked.
    device = await nats.connect(
        f"tls://localhost:{rt.nats_server.port}",
        nkeys_seed_str=key.nats_seed,
        inbox_prefix=inbox_prefix(key.key_id),
        tls=ca_context(str(rt.nats_tls.cert)),
        allow_reconnect=False,
    )
    try:
        ack = await device.jetstream(timeout=2).publish(topology.telemetry_subject("orga", a1), telemetry(battery=33.0))
        assert ack.seq > 0
        await eventually(lambda: _battery(rt, a1, 33.0), what="telemetry over TLS applied")
    finally:
        await device.close()
    # Without the certificate the device cannot verify the server ...
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect_once(f"nats://127.0.0.1:{rt.nats_server.port}", nkeys_seed_str=key.nats_seed, connect_timeout=2)
    # ... and a plaintext client is told TLS is required and dropped when it carries on in clear.
    reader, writer = await asyncio.open_connection("127.0.0.1", rt.nats_server.port)
    try:
        info = json.loads((await asyncio.wait_for(reader.readline(), 5)).split(b" ", 1)[1])
        assert info["tls_required"] is True
        writer.write(b'CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n')
        await writer.drain()
        assert await asyncio.wait_for(reader.read(100), 5) == b""  # closed without a PONG
    finally:
        writer.close()


async def _battery(rt: Runtime, entity_id: str, value: float) -> bool:
    doc = await state(rt, entity_id)
    return bool(doc and (doc.get("power") or {}).get("battery_remaining") == value)


async def test_nats_tls_false_keeps_nats_plaintext_with_https(make_runtime: Any) -> None:
    rt: Runtime = await make_runtime(nats_url="", nats_port=-1, tls_self_signed=True, nats_tls=False)
    assert rt.http_tls is not None and rt.nats_tls is None
    assert rt.nats_server is not None and rt.nats_server.url.startswith("nats://")
    assert nats_cert(Settings(tls_self_signed=True, nats_tls=False)) is None


def test_serve_over_https_with_a_self_signed_certificate(server_process: Any, tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = server_process(env={"OVERWATCH_ADMIN_PASSWORD": "pw-for-tests-123"}, args=["--tls-self-signed"])
    cert = data / "tls" / "cert.pem"

    def ready() -> httpx.Response | None:
        assert proc.proc.poll() is None, proc.output()
        try:
            answer = httpx.get(
                f"https://127.0.0.1:{proc.port}/health/ready", verify=ca_context(str(cert), False), timeout=1
            )
        except (httpx.HTTPError, OSError):
            return None  # not up yet (or the certificate not written yet)
        return answer if answer.status_code == 200 else None

    ready_answer = wait_until(ready, timeout=30, interval=0.1, what="/health/ready over https")
    assert ready_answer.json()["checks"]["nats_auth"]["ok"] is True
    assert f"serving https://127.0.0.1:{proc.port}" in proc.output()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{proc.port}/health/live", timeout=2)
    assert proc.stop() == 0
