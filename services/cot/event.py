"""One CoT event, and its two encodings: CoT XML and TAK protocol version 1 (protobuf).

The XML is written directly (attribute values escaped), which is several times faster
than building an element tree for each event; the protobuf is a ``takproto``
``TakMessage`` framed by ``takproto.msg2proto`` (mesh header for UDP, length-delimited
stream framing for TCP/TLS).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from xml.sax.saxutils import quoteattr

import msgspec
from takproto.constants import TAKProtoVer
from takproto.functions import msg2proto
from takproto.proto import TakMessage

UNKNOWN_ERROR = 9999999.0  # CoT's "not known" for hae, ce and le
MARKER = "overwatch"  # detail element our own events carry, so a listener can drop its own echo


class CotEvent(msgspec.Struct, kw_only=True):
    """The fields of a CoT event this gateway reads and writes (times in epoch seconds)."""

    uid: str
    type: str
    how: str = "m-g"
    time: float
    start: float
    stale: float
    lat: float
    lon: float
    hae: float = UNKNOWN_ERROR
    ce: float = UNKNOWN_ERROR
    le: float = UNKNOWN_ERROR
    callsign: str = ""
    course: float | None = None
    speed: float | None = None
    battery: float | None = None
    remarks: str = ""
    video_url: str = ""
    ours: bool = False  # carries our marker (set on the way out, read on the way in)


def iso(ts: float) -> str:
    """CoT time: ISO 8601 UTC with milliseconds and ``Z``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _num(value: float) -> str:
    # repr is the shortest exact form and the fastest; 7 decimals is ~1 cm of latitude.
    return repr(round(value, 7))


def detail_xml(ev: CotEvent) -> str:
    """The inner XML of ``<detail>`` other than contact, track and status."""
    parts = []
    if ev.remarks:
        parts.append(f"<remarks>{_text(ev.remarks)}</remarks>")
    if ev.video_url:
        parts.append(f"<__video url={quoteattr(ev.video_url)}/>")
    if ev.ours:
        parts.append(f'<{MARKER} v="1"/>')
    return "".join(parts)


def _text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_xml(ev: CotEvent) -> bytes:
    """The event as CoT XML (one ``<event>`` with declaration, UTF-8)."""
    detail = []
    if ev.callsign:
        detail.append(f"<contact callsign={quoteattr(ev.callsign)}/>")
    if ev.course is not None or ev.speed is not None:
        detail.append(f'<track course="{_num(ev.course or 0.0)}" speed="{_num(ev.speed or 0.0)}"/>')
    if ev.battery is not None:
        detail.append(f'<status battery="{int(ev.battery)}"/>')
    detail.append(detail_xml(ev))
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        f'<event version="2.0" uid={quoteattr(ev.uid)} type={quoteattr(ev.type)} how={quoteattr(ev.how)}'
        f' time="{iso(ev.time)}" start="{iso(ev.start)}" stale="{iso(ev.stale)}">'
        f'<point lat="{_num(ev.lat)}" lon="{_num(ev.lon)}" hae="{_num(ev.hae)}" ce="{_num(ev.ce)}"'
        f' le="{_num(ev.le)}"/><detail>{"".join(detail)}</detail></event>'
    ).encode()


def to_message(ev: CotEvent) -> TakMessage:
    """The event as a ``takproto`` ``TakMessage``."""
    msg = TakMessage()
    cot = msg.cotEvent
    cot.type = ev.type
    cot.uid = ev.uid
    cot.how = ev.how
    cot.sendTime = int(ev.time * 1000)
    cot.startTime = int(ev.start * 1000)
    cot.staleTime = int(ev.stale * 1000)
    cot.lat = ev.lat
    cot.lon = ev.lon
    cot.hae = ev.hae
    cot.ce = ev.ce
    cot.le = ev.le
    detail = cot.detail
    if ev.callsign:
        detail.contact.callsign = ev.callsign
    if ev.course is not None or ev.speed is not None:
        detail.track.course = ev.course or 0.0
        detail.track.speed = ev.speed or 0.0
    if ev.battery is not None:
        detail.status.battery = int(ev.battery)
    extra = detail_xml(ev)
    if extra:
        detail.xmlDetail = extra
    return msg


def to_proto(ev: CotEvent, stream: bool) -> bytes:
    """TAK protocol v1: the mesh framing (``stream=False``, UDP) or the stream framing (TCP/TLS)."""
    return bytes(msg2proto(to_message(ev), TAKProtoVer.STREAM if stream else TAKProtoVer.MESH))


def now() -> float:
    """The current time in epoch seconds (one place, so tests and benchmarks read the same clock)."""
    return time.time()
