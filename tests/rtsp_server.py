"""A tiny RTSP 1.0 server for tests: MJPEG over RTP (RFC 2435) on TCP interleaved channels.

It exists so the capture path can be exercised against a real stream without an ffmpeg
binary or a camera. Only what OpenCV's bundled FFmpeg needs is implemented: one track,
TCP interleaved transport (UDP SETUPs get 461 so a client falls back to TCP), and a
JPEG-per-frame stream whose pixels encode the server's frame counter, so a test can tell
which frame it decoded. ``drop()``/``restore()`` simulate an outage (connections closed
and refused); ``stalled`` a stream that stays connected but delivers nothing.
"""

from __future__ import annotations

import asyncio
import random
import re
import threading
from typing import Any

import cv2
import numpy as np

MAX_PAYLOAD = 1400  # RTP payload per packet (fits a typical MTU even though TCP would not need it)
BITS = 16  # width of the frame counter painted into each image
# One MJPEG track; its control URL is resolved against the Content-Base sent with DESCRIBE.
SDP = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=test\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\na=control:*\r\n"
SDP += "m=video 0 RTP/AVP 26\r\na=rtpmap:26 JPEG/90000\r\na=control:track0\r\n"


def parse_jpeg(data: bytes) -> tuple[int, int, bytes, bytes]:
    """(width, height, luma+chroma quantization tables, entropy-coded scan) of a baseline 4:2:0 JPEG."""
    tables: dict[int, bytes] = {}
    width = height = 0
    i = 2  # after SOI
    while i + 4 <= len(data):
        marker, length = data[i + 1], int.from_bytes(data[i + 2 : i + 4], "big")
        body = data[i + 4 : i + 2 + length]
        if marker == 0xDB:  # DQT: one or more 8-bit tables, already in zigzag order as RFC 2435 wants
            for j in range(0, len(body), 65):
                if body[j] >> 4:
                    raise ValueError("16-bit quantization tables are not supported")
                tables[body[j] & 0x0F] = body[j + 1 : j + 65]
        elif marker == 0xC0:  # SOF0: baseline; RTP/JPEG type 1 means Y 2x2, Cb/Cr 1x1 on tables 0,1,1
            height, width = int.from_bytes(body[1:3], "big"), int.from_bytes(body[3:5], "big")
            if body[5] != 3 or [body[7], body[10], body[13]] != [0x22, 0x11, 0x11]:
                raise ValueError("only 3-component 4:2:0 JPEGs map onto RTP/JPEG type 1")
        elif 0xC1 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) or marker == 0xDD:
            raise ValueError(f"unsupported JPEG marker 0x{marker:02X} (progressive, arithmetic or restarts)")
        elif marker == 0xDA:  # SOS: the rest up to EOI is the scan; the receiver rebuilds all headers
            end = data.rindex(b"\xff\xd9")
            return width, height, tables[0] + tables[1], data[i + 2 + length : end]
        i += 2 + length
    raise ValueError("no scan in JPEG")


def rtp_jpeg(jpeg: bytes, seq: int, timestamp: int, ssrc: int) -> list[bytes]:
    """One frame as RTP packets (payload type 26, Q=255 with in-band tables, marker on the last)."""
    width, height, qtables, scan = parse_jpeg(jpeg)
    if width % 16 or height % 16 or width > 2040 or height > 2040:
        raise ValueError("RTP/JPEG 4:2:0 needs dimensions that are multiples of 16 and at most 2040")
    packets = []
    offset = 0
    while offset < len(scan):
        # The quantization table header travels only with the fragment at offset 0.
        qheader = bytes([0, 0]) + len(qtables).to_bytes(2, "big") + qtables if offset == 0 else b""
        chunk = scan[offset : offset + MAX_PAYLOAD - 8 - len(qheader)]
        last = offset + len(chunk) >= len(scan)
        rtp = bytes([0x80, (0x80 if last else 0) | 26]) + ((seq + len(packets)) & 0xFFFF).to_bytes(2, "big")
        rtp += timestamp.to_bytes(4, "big") + ssrc.to_bytes(4, "big")
        jpeg_header = bytes([0]) + offset.to_bytes(3, "big") + bytes([1, 255, width // 8, height // 8])
        packets.append(rtp + jpeg_header + qheader + chunk)
        offset += len(chunk)
    return packets


def render(counter: int, width: int = 320, height: int = 240) -> np.ndarray:
    """A frame whose top band encodes ``counter`` in black/white cells, plus a moving box and text."""
    image = np.full((height, width, 3), 60, np.uint8)
    cell = width // BITS
    for bit in range(BITS):
        if counter >> bit & 1:
            image[0:16, bit * cell : (bit + 1) * cell] = 255
        else:
            image[0:16, bit * cell : (bit + 1) * cell] = 0
    x = counter * 7 % (width - 40)
    cv2.rectangle(image, (x, 100), (x + 40, 140), (0, 200, 255), -1)
    cv2.putText(image, f"#{counter}", (10, height - 20), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
    return image


def read_counter(image: np.ndarray) -> int:
    """The counter :func:`render` painted, read back from the centre of each cell (survives JPEG)."""
    cell = image.shape[1] // BITS
    return sum(1 << bit for bit in range(BITS) if image[8, bit * cell + cell // 2].mean() > 128)


class RtspServer:
    """RTSP on 127.0.0.1 (random port), run by its own event loop thread so blocking tests cannot stall it."""

    def __init__(self, width: int = 320, height: int = 240, fps: float = 15.0, path: str = "/live") -> None:
        self.width, self.height, self.fps, self.path = width, height, fps, path
        self.port = 0
        self.frames_sent = 0  # also the counter painted into the next frame
        self.sessions = 0  # PLAYs served
        self.connections = 0  # connections accepted while up
        self.refused = 0  # connections closed at once while dropped
        self.stalled = False  # while set, sessions stay open but send nothing (a black-holed stream)
        self._dropped = False
        self._clients: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="rtsp-server", daemon=True)
        self._server: asyncio.AbstractServer | None = None

    @property
    def url(self) -> str:
        """The stream URL."""
        return f"rtsp://127.0.0.1:{self.port}{self.path}"

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def start(self) -> RtspServer:
        """Listen and serve."""
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        """Close every connection and the listener, then end the loop thread."""
        self._call(self._shutdown(close_listener=True))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def drop(self) -> None:
        """Outage: close every client connection and close new ones as soon as they arrive."""
        self._dropped = True
        self._call(self._shutdown(close_listener=False))

    def restore(self) -> None:
        """End the outage: serve new connections again."""
        self._dropped = False

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _shutdown(self, close_listener: bool) -> None:
        if close_listener and self._server is not None:
            self._server.close()
        # Abort the sockets rather than cancelling the handlers: each handler then sees EOF and
        # ends normally (a cancelled handler task makes asyncio log an error on Python 3.11).
        for writer in self._clients.values():
            writer.transport.abort()
        await asyncio.gather(*self._clients, return_exceptions=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._dropped:
            # Accept-and-close rather than unbinding the port, so nothing else can take it meanwhile.
            self.refused += 1
            writer.close()
            return
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._clients[task] = writer
        streaming: asyncio.Task[None] | None = None
        session, channel = f"{random.getrandbits(32):08X}", 0
        try:
            while True:
                first = await reader.readexactly(1)
                if first == b"$":  # interleaved RTCP from the client: read and ignore
                    header = await reader.readexactly(3)
                    await reader.readexactly(int.from_bytes(header[1:3], "big"))
                    continue
                head = (first + await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                method = head[0].split(" ")[0]  # one stream, so the URI does not matter
                fields = (line.partition(":") for line in head[1:] if line)
                headers = {name.strip().lower(): value.strip() for name, _, value in fields}
                await reader.readexactly(int(headers.get("content-length", "0")))
                reply: dict[str, str] = {}
                status, body = "200 OK", b""
                if method == "OPTIONS":
                    reply["Public"] = "OPTIONS, DESCRIBE, SETUP, PLAY, GET_PARAMETER, TEARDOWN"
                elif method == "DESCRIBE":
                    body = SDP.encode()
                    reply |= {"Content-Type": "application/sdp", "Content-Base": f"{self.url}/"}
                elif method == "SETUP":
                    transport = headers.get("transport", "")
                    if "RTP/AVP/TCP" not in transport:
                        status = "461 Unsupported Transport"  # makes FFmpeg retry over TCP
                    else:
                        match = re.search(r"interleaved=(\d+)", transport)
                        channel = int(match.group(1)) if match else 0
                        reply["Transport"] = f"RTP/AVP/TCP;unicast;interleaved={channel}-{channel + 1}"
                        reply["Session"] = f"{session};timeout=60"
                elif method == "PLAY":
                    if streaming is None:
                        self.sessions += 1
                        streaming = asyncio.create_task(self._stream(writer, channel))
                    reply |= {"Session": session, "Range": "npt=0.000-"}
                elif method in ("GET_PARAMETER", "TEARDOWN"):
                    reply["Session"] = session
                else:
                    status = "405 Method Not Allowed"
                lines = [f"RTSP/1.0 {status}", f"CSeq: {headers.get('cseq', '0')}", *map(": ".join, reply.items())]
                lines.append(f"Content-Length: {len(body)}")
                writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
                await writer.drain()
                if method == "TEARDOWN":
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass  # the client went away or spoke nonsense: end this connection
        finally:
            if streaming is not None:
                streaming.cancel()
                await asyncio.gather(streaming, return_exceptions=True)
            writer.close()
            self._clients.pop(task, None)

    async def _stream(self, writer: asyncio.StreamWriter, channel: int) -> None:
        """Send frames at ``fps`` on a fixed schedule (no drift), stamped from the 90 kHz media clock."""
        ssrc, seq, ts0 = random.getrandbits(32), random.getrandbits(16), random.getrandbits(32)
        start = self._loop.time()
        ticks = 0
        try:
            while True:
                if not self.stalled:
                    ok, jpeg = cv2.imencode(".jpg", render(self.frames_sent, self.width, self.height))
                    assert ok
                    timestamp = (ts0 + int((self._loop.time() - start) * 90000)) & 0xFFFFFFFF
                    packets = rtp_jpeg(jpeg.tobytes(), seq, timestamp, ssrc)
                    seq = (seq + len(packets)) & 0xFFFF
                    writer.write(b"".join(b"$" + bytes([channel]) + len(p).to_bytes(2, "big") + p for p in packets))
                    await writer.drain()
                    self.frames_sent += 1
                ticks += 1
                await asyncio.sleep(max(0.0, start + ticks / self.fps - self._loop.time()))
        except ConnectionError:
            pass  # the client went away; the request loop cleans up
