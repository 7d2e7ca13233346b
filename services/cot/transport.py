"""TAK transports: outbound links (``COT_URL``, opened with PyTAK) and inbound listeners (``COT_LISTEN``).

Outbound URLs use PyTAK's names and schemes — ``udp://``, ``udp+wo://``,
``udp+broadcast://``, multicast groups such as ``udp://239.2.3.1:6969``, ``tcp://``,
``tls://`` — and its ``PYTAK_TLS_*`` settings; ``pytak.protocol_factory`` opens the
socket. UDP links only write (``COT_LISTEN`` is the way in from a mesh); a ``tcp://`` or
``tls://`` link to a TAK server also reads what the server relays (its other clients'
CoT) into the CoT-in path, unless it is write-only (``tcp+wo://``, ``tls+wo://``: what
the server sends is drained and ignored). Each link has a bounded queue (the oldest
event goes first when it is full, counted), reconnects with exponential backoff and
asks for the whole picture again after each (re)connect.

Listeners take ``udp://HOST:PORT`` (a multicast group address joins the group) and
``tcp://HOST:PORT``. A TCP listener is also a way out: connected clients (ATAK pointed
straight at Overwatch as its TAK server) receive the picture.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
import warnings
from collections import deque
from collections.abc import Awaitable, Callable
from configparser import ConfigParser
from dataclasses import dataclass, field
from typing import Any

import pytak

from core.cot_urls import ListenUrl, OutUrl
from services.cot.parse import CotRejected, StreamSplitter

log = logging.getLogger("overwatch.cot")

QUEUE_MAX = 10_000  # events waiting per link
MAX_PEERS = 256  # TCP clients per listener
BACKOFF_MIN, BACKOFF_MAX = 0.5, 30.0  # seconds between reconnects
READ_CHUNK = 65536


Handler = Callable[[bytes, str, "TcpPeer | None"], Awaitable[None]]
Refusal = Callable[[CotRejected, bytes, str], Awaitable[None]]


@dataclass
class LinkStats:
    """Counters of one outbound link (shown on /health/ready's worker stats and in the logs)."""

    sent: int = 0
    dropped: int = 0  # queue full: oldest event dropped
    errors: int = 0
    connects: int = 0
    connected: bool = False
    last_error: str = ""


@dataclass(eq=False)
class OutLink:
    """One destination: queue, connection, reconnect loop."""

    target: OutUrl
    tls: dict[str, str]
    on_connect: Callable[[OutLink], None]
    # What a TAK server sends back on a read-write tcp:// or tls:// link (not ``+wo``): the CoT-in path.
    receive: Handler | None = None
    refuse: Refusal | None = None
    max_bytes: int = 65536
    queue: deque[bytes] = field(default_factory=lambda: deque(maxlen=QUEUE_MAX))
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    stats: LinkStats = field(default_factory=LinkStats)

    @property
    def reads(self) -> bool:
        """A TCP/TLS link without ``+wo``: what the server sends comes in (PyTAK's read-write mode)."""
        return self.target.stream and "+wo" not in self.target.scheme and self.receive is not None

    def offer(self, data: bytes) -> None:
        """Queue one encoded event (never blocks; the oldest goes when full)."""
        if len(self.queue) == self.queue.maxlen:
            self.stats.dropped += 1
        self.queue.append(data)
        self.wakeup.set()

    def _config(self) -> Any:
        scheme = self.target.scheme
        if scheme.startswith("udp") and "+wo" not in scheme:
            scheme += "+wo"  # we only send here; COT_LISTEN is the way in
        parser = ConfigParser(interpolation=None)
        values = {"COT_URL": f"{scheme}://{self.target.host}:{self.target.port}"} | self.tls
        parser["DEFAULT"] = {k: v for k, v in values.items() if v}
        return parser["DEFAULT"]

    async def _open(self) -> tuple[Any, Any]:
        with warnings.catch_warnings():
            # PyTAK warns when verification is switched off; the operator asked for it (logged below).
            warnings.simplefilter("ignore")
            reader, writer = await asyncio.wait_for(pytak.protocol_factory(self._config()), 10.0)
        if self.tls.get("PYTAK_TLS_DONT_VERIFY") and self.target.scheme.startswith("tls"):
            log.warning("cot: %s: TLS certificate verification is off (PYTAK_TLS_DONT_VERIFY)", self.target.url)
        return reader, writer

    async def run(self, stopping: asyncio.Event) -> None:
        """Connect, send, reconnect with backoff, until ``stopping``."""
        delay = BACKOFF_MIN
        while not stopping.is_set():
            writer: Any = None
            drain: asyncio.Task[None] | None = None
            try:
                reader, writer = await self._open()
                self.stats.connects += 1
                self.stats.connected = True
                log.info("cot: connected to %s", self.target.url)
                delay = BACKOFF_MIN
                self.on_connect(self)
                if reader is not None and hasattr(reader, "read"):
                    drain = asyncio.create_task(
                        self._read(reader) if self.reads else _drain(reader), name="cot-link-read"
                    )
                await self._pump(writer, stopping, drain)
            except (
                OSError,
                TimeoutError,
                SyntaxError,
                ValueError,
                ConnectionError,
                pytak.asyncio_dgram.TransportClosed,
            ) as exc:
                self.stats.errors += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("cot: %s: %s; retrying in %.1fs", self.target.url, self.stats.last_error, delay)
            finally:
                self.stats.connected = False
                if drain is not None:
                    drain.cancel()
                _close(writer)
            if stopping.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, BACKOFF_MAX)

    async def _pump(self, writer: Any, stopping: asyncio.Event, drain: asyncio.Task[None] | None) -> None:
        datagram = hasattr(writer, "send")
        while not stopping.is_set():
            if not self.queue:
                self.wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wakeup.wait(), 1.0)
                if drain is not None and drain.done():
                    raise ConnectionError("connection closed by the peer")
                continue
            if datagram:
                sent = 0
                while self.queue:
                    sent += 1
                    if sent % 256 == 0:
                        await asyncio.sleep(0)  # datagrams never block: let the rest of the process run
                    data = self.queue.popleft()
                    try:
                        await writer.send(data)
                    except ConnectionRefusedError:
                        # ICMP "port unreachable" from an earlier datagram: nobody listens there
                        # right now. UDP has no connection to redo; count it and go on.
                        self.stats.errors += 1
                        self.stats.last_error = "ConnectionRefusedError: no listener at the destination"
                        continue
                    self.stats.sent += 1
            else:
                batch = list(self.queue)
                self.queue.clear()
                writer.write(b"".join(batch))
                await writer.drain()
                self.stats.sent += len(batch)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        """Feed what the server sends into the CoT-in path, one event at a time."""
        assert self.receive is not None and self.refuse is not None
        splitter = StreamSplitter(self.max_bytes)
        source = self.target.url
        while chunk := await reader.read(READ_CHUNK):
            for item in splitter.feed(chunk):
                if isinstance(item, CotRejected):
                    await self.refuse(item, b"", source)
                    continue
                try:
                    await self.receive(item, source, None)
                except Exception:  # the link must outlive any single event
                    log.exception("cot: handling an event from %s failed", source)


async def _drain(reader: asyncio.StreamReader) -> None:
    """Read and ignore what a TAK server sends on an outbound link; return when it closes."""
    while await reader.read(READ_CHUNK):
        pass


def _close(writer: Any) -> None:
    if writer is None:
        return
    with contextlib.suppress(Exception):
        writer.close()


# ---------------------------------------------------------------- listeners


class _Datagrams:
    """Drains a UDP socket in bursts (asyncio's datagram transport reads one datagram per wake-up,
    which lets the kernel's buffer overflow under a busy mesh) into a bounded queue."""

    BURST = 512  # datagrams read per wake-up

    def __init__(self, sock: socket.socket, queue: asyncio.Queue[tuple[bytes, str]]) -> None:
        self.sock = sock
        self.queue = queue
        self.overflow = 0

    def readable(self) -> None:
        for _ in range(self.BURST):
            try:
                data, addr = self.sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # e.g. an ICMP error queued on the socket: nothing to read
            try:
                self.queue.put_nowait((data, f"udp://{addr[0]}:{addr[1]}"))
            except asyncio.QueueFull:
                self.overflow += 1  # the gateway cannot keep up: the newest datagram is lost, counted


@dataclass(eq=False)
class TcpPeer:
    """One connected TCP client of a listener: it sends CoT in and receives the picture."""

    writer: asyncio.StreamWriter
    source: str
    queue: deque[bytes] = field(default_factory=lambda: deque(maxlen=QUEUE_MAX))
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: int = 0

    def offer(self, data: bytes) -> None:
        """Queue one encoded event for this client."""
        if len(self.queue) == self.queue.maxlen:
            self.dropped += 1
        self.queue.append(data)
        self.wakeup.set()


@dataclass
class Listener:
    """A bound UDP or TCP listener feeding events to ``handle``."""

    target: ListenUrl
    handle: Handler
    refuse: Refusal
    max_bytes: int
    on_peer: Callable[[TcpPeer], None] = lambda _p: None
    peers: set[TcpPeer] = field(default_factory=set)
    port: int = 0  # the bound port (useful with port 0)
    received: int = 0
    overflow: int = 0
    refused_peers: int = 0
    _server: asyncio.Server | None = None
    _sock: socket.socket | None = None
    _protocol: _Datagrams | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> None:
        """Bind the socket (raises ``OSError`` when the address is taken)."""
        loop = asyncio.get_running_loop()
        if self.target.scheme == "udp":
            sock = _udp_socket(self.target)
            queue: asyncio.Queue[tuple[bytes, str]] = asyncio.Queue(maxsize=20_000)
            self._sock, self._protocol = sock, _Datagrams(sock, queue)
            loop.add_reader(sock.fileno(), self._protocol.readable)
            self.port = sock.getsockname()[1]
            self._spawn(self._consume(queue))
        else:
            self._server = await asyncio.start_server(
                self._serve_peer, self.target.host, self.target.port, limit=READ_CHUNK
            )
            self.port = self._server.sockets[0].getsockname()[1]
        log.info("cot: listening on %s://%s:%d", self.target.scheme, self.target.host, self.port)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _consume(self, queue: asyncio.Queue[tuple[bytes, str]]) -> None:
        while True:
            data, source = await queue.get()
            self.received += 1
            await self._guarded(data, source, None)

    async def _guarded(self, data: bytes, source: str, peer: TcpPeer | None) -> None:
        try:
            await self.handle(data, source, peer)
        except Exception:  # the listener must outlive any single event
            log.exception("cot: handling an event from %s failed", source)

    async def _serve_peer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        addr = writer.get_extra_info("peername") or ("?", 0)
        if len(self.peers) >= MAX_PEERS:
            # Each client costs a task and a queue: a flood of connections is turned away, not served.
            self.refused_peers += 1
            if self.refused_peers == 1 or self.refused_peers % 1000 == 0:
                log.warning("cot: %s has %d clients; refused %s", self.target.url, MAX_PEERS, addr[0])
            _close(writer)
            return
        peer = TcpPeer(writer, f"tcp://{addr[0]}:{addr[1]}")
        self.peers.add(peer)
        sender = asyncio.create_task(self._send_to(peer), name="cot-peer-send")
        splitter = StreamSplitter(self.max_bytes)
        self.on_peer(peer)
        try:
            while True:
                chunk = await reader.read(READ_CHUNK)
                if not chunk:
                    break
                for item in splitter.feed(chunk):
                    self.received += 1
                    if isinstance(item, CotRejected):
                        await self.refuse(item, b"", peer.source)
                    else:
                        await self._guarded(item, peer.source, peer)
        except (ConnectionError, OSError):
            pass
        finally:
            self.peers.discard(peer)
            sender.cancel()
            _close(writer)

    async def _send_to(self, peer: TcpPeer) -> None:
        try:
            while True:
                if not peer.queue:
                    peer.wakeup.clear()
                    await peer.wakeup.wait()
                    continue
                batch = list(peer.queue)
                peer.queue.clear()
                peer.writer.write(b"".join(batch))
                await peer.writer.drain()
        except (ConnectionError, OSError):
            pass

    async def stop(self) -> None:
        """Close the socket and every client."""
        if self._sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        if self._protocol is not None:
            self.overflow = self._protocol.overflow
        if self._server is not None:
            self._server.close()
        for peer in list(self.peers):
            _close(peer.writer)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    @property
    def dropped_datagrams(self) -> int:
        """Datagrams lost because the gateway fell behind."""
        return self._protocol.overflow if self._protocol is not None else self.overflow


def _udp_socket(target: ListenUrl) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if target.multicast:
        with contextlib.suppress(AttributeError, OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("", target.port))
        group = socket.inet_aton(target.host)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, struct.pack("4sL", group, socket.INADDR_ANY))
    else:
        sock.bind((target.host, target.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.setblocking(False)
    return sock
