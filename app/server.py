"""``overwatch serve``: uvicorn embedded in the same event loop as NATS and the workers.

Shutdown on SIGINT/SIGTERM: end every SSE stream, let uvicorn close connections,
stop workers, drain NATS, stop the nats-server child, close SQLite — and exit 0.
uvicorn's own signal capture re-raises the signal after ``serve()`` returns, which
would kill the process before that cleanup runs, so it is disabled here and the
loop's signal handlers call ``request_exit`` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import signal
import socket
from collections.abc import Awaitable, Callable, Generator, Sequence

import uvicorn
from litestar.types import ASGIApp

from app.datadir import StartupError
from app.gc_tuning import settle_after_start
from app.main import create_app
from app.runtime import Runtime, WorkerFactory
from core.settings import Settings
from fabric.tls import CertPair

log = logging.getLogger("overwatch")


class EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal capture/re-raise (we own the signals)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind the HTTP socket up front so "port in use" is a clear error, not a traceback."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        why = "address already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        raise StartupError(f"cannot listen on {host}:{port}: {why}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def http_config(app: ASGIApp, settings: Settings, tls: CertPair | None) -> uvicorn.Config:
    """uvicorn's configuration: HTTPS with ``tls``, proxy headers only from trusted proxies.

    ``X-Forwarded-Proto`` (scheme, hence ``Secure`` cookies) and ``X-Forwarded-For``
    (client address for rate limits and the audit log) are honoured only when the
    peer is in ``OVERWATCH_TRUSTED_PROXIES``; with none configured they are ignored.
    """
    trusted = [str(ipaddress.ip_network(p, strict=False)) for p in settings.trusted_proxy_list]
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or [],
        server_header=False,
        ssl_certfile=str(tls.cert) if tls else None,
        ssl_keyfile=str(tls.key) if tls else None,
    )


async def serve(
    settings: Settings,
    worker_factories: Sequence[WorkerFactory] = (),
    after_start: Callable[[Runtime], Awaitable[None]] | None = None,
) -> int:
    """Run the server until a signal; return the process exit code."""
    sock = bind_socket(settings.host, settings.port)
    runtime = Runtime(settings, worker_factories)
    server: EmbeddedServer | None = None
    loop = asyncio.get_running_loop()

    def request_exit() -> None:
        if server is not None and server.should_exit:
            server.force_exit = True
            return
        log.info("shutting down")
        runtime.shutting_down.set()
        runtime.hub.close_all()
        if server is not None:
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, request_exit)
    try:
        await runtime.start()
        if after_start is not None:
            await after_start(runtime)
        config = http_config(create_app(runtime), settings, runtime.http_tls)
        server = EmbeddedServer(config)
        port = sock.getsockname()[1]
        scheme = "https" if runtime.http_tls else "http"
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
        log.info("serving %s://%s:%s", scheme, host, port)
        settle_after_start()
        if not runtime.shutting_down.is_set():
            await server.serve(sockets=[sock])
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        sock.close()
        await runtime.stop()
    log.info("stopped")
    return 0
