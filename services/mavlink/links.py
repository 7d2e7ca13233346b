"""MAVLink links: UDP (listen or connect), TCP (connect, reconnecting) and serial devices.

A link delivers raw bytes with the peer they came from and sends bytes back to a peer.
Parsing is the bridge's job (one parser per link and peer, since MAVLink framing is a
byte stream per sender). A link never raises into the bridge: socket errors are logged
and counted, TCP and serial links reopen with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from services.mavlink.config import LinkSpec

log = logging.getLogger("overwatch.mavlink.links")

Peer = Any  # (host, port) for UDP, None for a stream
OnBytes = Callable[["Link", bytes, Peer], None]
PEER_IDLE = 60.0  # seconds: a UDP peer silent this long gets no more GCS heartbeats
UDP_RCVBUF = 4 << 20  # bytes asked for (the kernel caps it at net.core.rmem_max)
MAX_PEERS = 256  # UDP peers remembered per listening link (spoofed sources cannot grow it without bound)


class Link:
    """Base class: a named transport with known peers."""

    def __init__(self, spec: LinkSpec, on_bytes: OnBytes) -> None:
        self.spec = spec
        self.name = spec.label
        self.on_bytes = on_bytes
        self.peers: dict[Peer, float] = {}  # peer → monotonic time last heard
        self.bytes_in = 0
        self.bytes_out = 0
        self.errors = 0
        self.up = False

    async def start(self) -> None:
        """Open the transport (raises ``OSError`` when it cannot be opened at all)."""

    def send(self, data: bytes, peer: Peer) -> None:
        """Send bytes to one peer (never raises)."""

    def broadcast(self, data: bytes) -> None:
        """Send bytes to every peer heard recently (the default target for connect links)."""
        now = time.monotonic()
        for peer, heard in list(self.peers.items()):
            if now - heard < PEER_IDLE:
                self.send(data, peer)

    def close(self) -> None:
        """Close the transport."""

    def _received(self, data: bytes, peer: Peer) -> None:
        self.bytes_in += len(data)
        if peer not in self.peers and len(self.peers) >= MAX_PEERS:
            oldest = min(self.peers, key=self.peers.__getitem__)
            del self.peers[oldest]
        self.peers[peer] = time.monotonic()
        self.on_bytes(self, data, peer)


class _Datagram(asyncio.DatagramProtocol):
    def __init__(self, link: UdpLink) -> None:
        self.link = link

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.link._received(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        # e.g. ICMP port unreachable after sending to a peer that went away: not fatal.
        self.link.errors += 1
        log.debug("%s: %s", self.link.name, exc)


class UdpLink(Link):
    """``udp-listen`` (bind, answer whoever sends) or ``udp-connect`` (send to one address)."""

    def __init__(self, spec: LinkSpec, on_bytes: OnBytes) -> None:
        super().__init__(spec, on_bytes)
        self.transport: asyncio.DatagramTransport | None = None
        self.target: Peer = None

    async def start(self) -> None:
        """Bind the socket (listen) or an ephemeral one aimed at the target (connect)."""
        loop = asyncio.get_running_loop()
        if self.spec.kind == "udp-listen":
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Datagram(self), local_addr=(self.spec.host, self.spec.port)
            )
        else:
            infos = await loop.getaddrinfo(self.spec.host, self.spec.port, type=socket.SOCK_DGRAM)
            self.target = (infos[0][4][0], infos[0][4][1])
            local = ("::", 0) if ":" in self.target[0] else ("0.0.0.0", 0)
            transport, _ = await loop.create_datagram_endpoint(lambda: _Datagram(self), local_addr=local)
            self.peers[self.target] = time.monotonic()
        self.transport = transport
        self.up = True
        sock = transport.get_extra_info("socket")
        with contextlib.suppress(OSError):
            # 100 vehicles at 200 msg/s are ~1 MB/s: a burst while the loop is busy must wait in the kernel, not drop.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)
        if self.spec.kind == "udp-listen":
            host, port = self.local_address
            self.name = f"listen udp:{host}:{port}"  # the real port when 0 was asked for

    @property
    def local_address(self) -> tuple[str, int]:
        """The bound address (the real port when 0 was asked for)."""
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    def send(self, data: bytes, peer: Peer) -> None:
        """Send one datagram."""
        if self.transport is None or peer is None:
            return
        try:
            self.transport.sendto(data, peer)
            self.bytes_out += len(data)
        except OSError as exc:
            self.errors += 1
            log.debug("%s: send to %s failed: %s", self.name, peer, exc)

    def broadcast(self, data: bytes) -> None:
        """Connect links always reach their target, even before it has said anything."""
        if self.target is not None:
            self.peers[self.target] = max(self.peers.get(self.target, 0.0), time.monotonic() - 1.0)
        super().broadcast(data)

    def close(self) -> None:
        """Close the socket."""
        if self.transport is not None:
            self.transport.close()
        self.up = False


class StreamLink(Link):
    """A byte stream (TCP client or serial device) that is reopened with backoff when it drops."""

    def __init__(self, spec: LinkSpec, on_bytes: OnBytes) -> None:
        super().__init__(spec, on_bytes)
        self._writer: Callable[[bytes], None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        """Keep the stream open in the background (the first attempt may fail: it retries)."""
        self._task = asyncio.create_task(self._keep_open(), name=f"mavlink-{self.name}")

    async def _keep_open(self) -> None:
        delay = 0.5
        while not self._closing:
            started = time.monotonic()
            try:
                await self._run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any transport failure: log, back off, reopen
                self.errors += 1
                log.warning("%s: %s; reopening in %.1fs", self.name, exc or type(exc).__name__, delay)
            self.up, self._writer = False, None
            if self._closing:
                return
            if time.monotonic() - started > 10:
                delay = 0.5
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _run_once(self) -> None:
        raise NotImplementedError

    def send(self, data: bytes, peer: Peer) -> None:
        """Write to the stream (dropped while it is down)."""
        if self._writer is None:
            return
        try:
            self._writer(data)
            self.bytes_out += len(data)
        except OSError as exc:
            self.errors += 1
            log.debug("%s: write failed: %s", self.name, exc)

    def broadcast(self, data: bytes) -> None:
        """A stream has one peer."""
        self.send(data, None)

    def close(self) -> None:
        """Stop reopening and close."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()


class TcpLink(StreamLink):
    """``tcp:HOST:PORT``: a client connection to e.g. SITL or mavlink-router's TCP server."""

    async def _run_once(self) -> None:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(self.spec.host, self.spec.port), 5.0)
        self._writer = writer.write
        self.up = True
        log.info("%s: connected", self.name)
        try:
            while chunk := await reader.read(65536):
                self._received(chunk, None)
        finally:
            self._writer = None
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        raise ConnectionError("connection closed by peer")


_BAUDS = {
    9600: "B9600",
    19200: "B19200",
    38400: "B38400",
    57600: "B57600",
    115200: "B115200",
    230400: "B230400",
    460800: "B460800",
    500000: "B500000",
    921600: "B921600",
    1000000: "B1000000",
    1500000: "B1500000",
    2000000: "B2000000",
}


class SerialLink(StreamLink):
    """A serial device (telemetry radio, USB autopilot), raw 8N1 at the given baud rate."""

    async def _run_once(self) -> None:
        import termios

        baud_name = _BAUDS.get(self.spec.baud)
        if baud_name is None or not hasattr(termios, baud_name):
            raise ValueError(f"unsupported baud rate {self.spec.baud}")
        fd = os.open(self.spec.device, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        try:
            attrs = termios.tcgetattr(fd)
            speed = getattr(termios, baud_name)
            attrs[0] = 0  # iflag: raw
            attrs[1] = 0  # oflag
            attrs[2] = termios.CS8 | termios.CREAD | termios.CLOCAL
            attrs[3] = 0  # lflag: no echo, no canonical mode
            attrs[4] = attrs[5] = speed
            termios.tcsetattr(fd, termios.TCSANOW, attrs)

            def readable() -> None:
                try:
                    chunk = os.read(fd, 4096)
                except BlockingIOError:
                    return
                except OSError as exc:
                    if not done.done():
                        done.set_exception(exc)
                    return
                if not chunk:
                    if not done.done():
                        done.set_exception(ConnectionError("device closed"))
                    return
                self._received(chunk, None)

            loop.add_reader(fd, readable)
            self._writer = lambda data: _write_all(fd, data)
            self.up = True
            log.info("%s: open", self.name)
            await done
        finally:
            with contextlib.suppress(Exception):
                loop.remove_reader(fd)
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            return  # the radio's buffer is full: MAVLink tolerates a lost frame, a blocked loop not
        view = view[written:]


def make_link(spec: LinkSpec, on_bytes: OnBytes) -> Link:
    """The link class for a spec."""
    if spec.kind in ("udp-listen", "udp-connect"):
        return UdpLink(spec, on_bytes)
    if spec.kind == "tcp":
        return TcpLink(spec, on_bytes)
    return SerialLink(spec, on_bytes)
