"""Connecting to NATS: the embedded child or external servers (token, creds or NKey)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import ParseResult, unquote, urlsplit

import nats
from nats.aio.client import Client as NATS

log = logging.getLogger("overwatch.nats.client")


def server_address(url: ParseResult) -> str:
    """``host:port`` of a server URL, never its user or password (a cluster URL may carry them)."""
    host = url.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{url.port}" if url.port else host


def _userinfo(servers: list[str]) -> tuple[str, str, str]:
    """``(user, password, token)`` from the first URL that carries any (a token is a user without password)."""
    for url in servers:
        parts = urlsplit(url if "://" in url else f"nats://{url}")
        if parts.username:
            user, password = unquote(parts.username), unquote(parts.password or "")
            return (user, password, "") if password else ("", "", user)
    return "", "", ""


def redacted(urls: list[str]) -> str:
    """Server URLs for a message: any ``user:password@`` replaced by ``***@``."""
    return ", ".join(re.sub(r"//[^/@]*@", "//***@", u) for u in urls)


class NatsConnectError(Exception):
    """The NATS server(s) could not be reached in time."""


async def connect(
    servers: list[str],
    *,
    name: str,
    timeout: float = 10.0,
    token: str = "",
    creds: str = "",
    nkey_seed_file: str = "",
    user: str = "",
    password: str = "",
    nkey_seed: str = "",
    inbox_prefix: str = "",
    on_state: Callable[[bool], None] | None = None,
    tls: ssl.SSLContext | None = None,
) -> NATS:
    """Connect with reconnect-forever semantics; fail with ``NatsConnectError`` after ``timeout``.

    nats-py keeps retrying the initial connection forever when reconnects are
    unlimited, so the first connection is bounded here instead.
    """
    errors: list[str] = []
    holder: list[NATS] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc) or type(exc).__name__)
        if len(errors) > 1:
            log.debug("nats error: %s", exc)

    async def on_disconnect() -> None:
        closing = bool(holder) and (holder[0].is_closed or holder[0].is_draining)
        log.log(logging.DEBUG if closing else logging.WARNING, "disconnected from NATS")
        if on_state is not None:
            on_state(False)

    async def on_reconnect() -> None:
        log.info("reconnected to NATS")
        if on_state is not None:
            on_state(True)

    options: dict[str, Any] = {
        "servers": servers,
        "name": name,
        "connect_timeout": min(2.0, timeout),
        "reconnect_time_wait": 0.5,
        "max_reconnect_attempts": -1,
        "error_cb": on_error,
        "disconnected_cb": on_disconnect,
        "reconnected_cb": on_reconnect,
        # Large enough to absorb a telemetry burst while reconnecting.
        "pending_size": 64 * 1024 * 1024,
    }
    if not (user or token or creds or nkey_seed or nkey_seed_file):
        # Credentials in the URLs (``nats://user:password@host``) are nats-py's only for those URLs: a
        # cluster member learnt from the servers' INFO would be tried without them and refuse us.
        user, password, token = _userinfo(servers)
    if token:
        options["token"] = token
    if creds:
        options["user_credentials"] = creds
    if nkey_seed_file:
        options["nkeys_seed"] = nkey_seed_file
    if nkey_seed:
        options["nkeys_seed_str"] = nkey_seed
    if user:
        options["user"], options["password"] = user, password
    if inbox_prefix:
        options["inbox_prefix"] = inbox_prefix
    if tls is not None:
        options["tls"] = tls
    task = asyncio.ensure_future(nats.connect(**options))
    try:
        nc: NATS = await asyncio.wait_for(task, timeout)
        holder.append(nc)
        return nc
    except TimeoutError:
        reason = errors[-1] if errors else "no answer"
        raise NatsConnectError(
            f"cannot connect to NATS at {redacted(servers)} within {timeout:.0f}s ({reason})"
        ) from None
    except (OSError, nats.errors.Error) as exc:
        raise NatsConnectError(f"cannot connect to NATS at {redacted(servers)}: {exc}") from None


async def close_quietly(nc: NATS | None, drain_timeout: float = 2.0) -> None:
    """Drain (flush pending publishes, stop subscriptions) then close, bounded in time."""
    if nc is None or nc.is_closed:
        return
    try:
        if nc.is_connected:
            await asyncio.wait_for(nc.drain(), drain_timeout)
    except Exception as exc:  # noqa: BLE001 - shutdown continues whatever drain says
        log.debug("drain: %s", exc)
    with contextlib.suppress(Exception):
        await nc.close()
