"""Reading CoT from the network without trusting it: size limits, no DTDs, no entities.

``parse`` takes one event (CoT XML, or TAK protocol v1 in mesh or stream framing) and
returns a ``CotEvent`` or a ``Ping``; anything else raises ``CotRejected`` with a short
reason code (counted by the gateway) and a sentence (its dead letter). The XML parser
is lxml with entity resolution, DTD loading and network access off and no huge-tree
mode, and a document that declares a DTD is refused before it is parsed, so entity
expansion ("billion laughs") and external entities can never run.

``StreamSplitter`` cuts a TCP byte stream into events, dropping an oversized one
without losing the events after it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from google.protobuf.message import DecodeError as ProtoDecodeError
from lxml import etree
from takproto.proto import TakMessage

from services.cot.event import MARKER, UNKNOWN_ERROR, CotEvent
from services.cot.types import PING_TYPE, UnknownCotType, classify

MESH_HEADER = b"\xbf\x01\xbf"
STREAM_MAGIC = 0xBF
MAX_UID = 256
MAX_TEXT = 2000  # characters of remarks/callsign kept

REASONS = (
    "oversized",
    "dtd",
    "invalid_xml",
    "invalid_proto",
    "not_event",
    "bad_uid",
    "unknown_type",
    "bad_time",
    "bad_point",
)


class CotRejected(ValueError):
    """An event the gateway refuses: ``reason`` is one of ``REASONS``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Ping:
    """A TAK client's keep-alive (``t-x-c-t``); a TCP peer is answered with a pong."""

    uid: str


_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    remove_comments=True,
    remove_pis=True,
    collect_ids=False,
)


def parse(data: bytes, max_bytes: int) -> CotEvent | Ping:
    """One event from a datagram or a cut stream frame; ``CotRejected`` when it is not acceptable."""
    if len(data) > max_bytes:
        raise CotRejected("oversized", f"event of {len(data)} bytes exceeds {max_bytes}")
    if data[:3] == MESH_HEADER:
        return _from_proto(data[3:])
    if data[:1] == bytes([STREAM_MAGIC]):
        length, offset = _varint(data, 1)
        if length is None or offset + length != len(data):
            raise CotRejected("invalid_proto", "TAK stream frame length does not match its payload")
        return _from_proto(data[offset:])
    return _from_xml(data)


def _varint(data: bytes | bytearray, pos: int) -> tuple[int | None, int]:
    """A protobuf varint at ``pos`` → ``(value, next position)``; ``(None, pos)`` when incomplete."""
    value = shift = 0
    while pos < len(data) and shift < 35:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    if shift >= 35:
        raise CotRejected("invalid_proto", "TAK stream frame length is not a varint")
    return None, pos


def _time(value: str | None, what: str) -> float:
    if not value:
        raise CotRejected("bad_time", f"missing {what}")
    try:
        ts = datetime.fromisoformat(value.strip()).timestamp()
    except ValueError:
        raise CotRejected("bad_time", f"{what} {value[:40]!r} is not an ISO 8601 time") from None
    return ts


def _float(value: str | float | None, default: float | None = None) -> float | None:
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) else default


def _check(uid: str, cot_type: str, lat: float | None, lon: float | None) -> tuple[float, float]:
    if not uid or len(uid) > MAX_UID or not uid.isprintable():
        raise CotRejected("bad_uid", f"uid {uid[:40]!r} is empty, too long or not printable")
    try:
        classify(cot_type)
    except UnknownCotType as exc:
        raise CotRejected("unknown_type", str(exc)) from None
    if lat is None or lon is None or not -90 <= lat <= 90 or not -180 <= lon <= 180:
        raise CotRejected("bad_point", f"point lat={lat} lon={lon} is not a position")
    return lat, lon


def _from_xml(data: bytes) -> CotEvent | Ping:
    # XML keywords are case-sensitive (a lower-case "<!doctype" is not well-formed and fails below).
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise CotRejected("dtd", "documents declaring a DTD or entities are refused")
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise CotRejected("invalid_xml", str(exc)[:200]) from None
    if root is None or root.tag != "event":
        raise CotRejected("not_event", "the document is not a CoT <event>")
    if root.getroottree().docinfo.internalDTD is not None:
        raise CotRejected("dtd", "documents declaring a DTD are refused")
    uid = root.get("uid") or ""
    cot_type = root.get("type") or ""
    if cot_type == PING_TYPE or cot_type.startswith(PING_TYPE + "-"):
        return Ping(uid[:MAX_UID])
    point = root.find("point")
    lat = _float(point.get("lat")) if point is not None else None
    lon = _float(point.get("lon")) if point is not None else None
    lat, lon = _check(uid, cot_type, lat, lon)
    assert point is not None
    ev = CotEvent(
        uid=uid,
        type=cot_type,
        how=(root.get("how") or "")[:16],
        time=_time(root.get("time"), "time"),
        start=_time(root.get("start") or root.get("time"), "start"),
        stale=_time(root.get("stale"), "stale"),
        lat=lat,
        lon=lon,
        hae=_float(point.get("hae"), UNKNOWN_ERROR) or 0.0,
        ce=_float(point.get("ce"), UNKNOWN_ERROR) or 0.0,
        le=_float(point.get("le"), UNKNOWN_ERROR) or 0.0,
    )
    detail = root.find("detail")
    if detail is not None:
        _read_detail(ev, detail)
    return ev


def _read_detail(ev: CotEvent, detail: etree._Element) -> None:
    for child in detail:
        tag = child.tag
        if tag == "contact":
            ev.callsign = (child.get("callsign") or "")[:MAX_TEXT]
        elif tag == "track":
            ev.course = _float(child.get("course"))
            ev.speed = _float(child.get("speed"))
        elif tag == "status":
            ev.battery = _float(child.get("battery"))
        elif tag == "remarks":
            ev.remarks = (child.text or "")[:MAX_TEXT]
        elif tag == "__video":
            ev.video_url = (child.get("url") or "")[:2048]
        elif tag == MARKER:
            ev.ours = True


def _from_proto(payload: bytes) -> CotEvent | Ping:
    msg = TakMessage()
    try:
        msg.ParseFromString(payload)
    except (ProtoDecodeError, RuntimeError, ValueError) as exc:
        raise CotRejected("invalid_proto", f"not a TAK protocol v1 message: {exc}") from None
    cot = msg.cotEvent
    if cot.type == PING_TYPE or cot.type.startswith(PING_TYPE + "-"):
        return Ping(cot.uid[:MAX_UID])
    lat, lon = _check(cot.uid, cot.type, _float(cot.lat), _float(cot.lon))
    if not cot.sendTime or not cot.staleTime:
        raise CotRejected("bad_time", "missing send or stale time")
    detail = cot.detail
    ev = CotEvent(
        uid=cot.uid,
        type=cot.type,
        how=cot.how[:16],
        time=cot.sendTime / 1000,
        start=(cot.startTime or cot.sendTime) / 1000,
        stale=cot.staleTime / 1000,
        lat=lat,
        lon=lon,
        hae=_float(cot.hae, UNKNOWN_ERROR) or 0.0,
        ce=_float(cot.ce, UNKNOWN_ERROR) or 0.0,
        le=_float(cot.le, UNKNOWN_ERROR) or 0.0,
        callsign=detail.contact.callsign[:MAX_TEXT],
    )
    if detail.HasField("track"):
        ev.course = _float(detail.track.course)
        ev.speed = _float(detail.track.speed)
    if detail.HasField("status"):
        ev.battery = float(detail.status.battery)
    if detail.xmlDetail:
        # xmlDetail is a fragment of sibling elements: parse it under a synthetic root, same rules.
        fragment = detail.xmlDetail.encode()
        if b"<!" in fragment:
            raise CotRejected("dtd", "xmlDetail may not declare a DTD or entities")
        try:
            extra = etree.fromstring(b"<detail>" + fragment + b"</detail>", _PARSER)
        except etree.XMLSyntaxError as exc:
            raise CotRejected("invalid_xml", f"xmlDetail: {str(exc)[:200]}") from None
        _read_detail(ev, extra)
    return ev


class StreamSplitter:
    """Cuts a TCP stream of CoT XML events or TAK protocol v1 stream frames into single events.

    ``feed`` returns complete events (bytes) and ``CotRejected`` markers for events that
    were dropped for their size; the stream stays usable after either.
    """

    END = b"</event>"

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.buf = bytearray()
        self.skip_xml = False  # dropping an oversized XML event up to its end tag
        self.skip_bytes = 0  # dropping an oversized protobuf frame's remaining bytes

    def feed(self, data: bytes) -> list[bytes | CotRejected]:
        """Add received bytes; return what became complete."""
        self.buf += data
        out: list[bytes | CotRejected] = []
        while True:
            if self.skip_bytes:
                cut = min(self.skip_bytes, len(self.buf))
                del self.buf[:cut]
                self.skip_bytes -= cut
                if self.skip_bytes:
                    return out
            stripped = len(self.buf) - len(self.buf.lstrip())
            if stripped:
                del self.buf[:stripped]
            if not self.buf:
                return out
            if self.buf[0] == STREAM_MAGIC and not self.skip_xml:
                try:
                    length, offset = _varint(self.buf, 1)
                except CotRejected as exc:
                    out.append(exc)
                    self.buf.clear()
                    return out
                if length is None:
                    return out
                if length > self.max_bytes:
                    out.append(CotRejected("oversized", f"frame of {length} bytes exceeds {self.max_bytes}"))
                    del self.buf[:offset]
                    self.skip_bytes = length
                    continue
                if len(self.buf) < offset + length:
                    return out
                out.append(bytes(self.buf[: offset + length]))
                del self.buf[: offset + length]
                continue
            end = self.buf.find(self.END)
            if end < 0:
                if len(self.buf) > self.max_bytes:
                    if not self.skip_xml:
                        out.append(CotRejected("oversized", f"event exceeds {self.max_bytes} bytes"))
                        self.skip_xml = True
                    # Keep only a tail that could hold the start of the end tag.
                    del self.buf[: len(self.buf) - len(self.END)]
                return out
            event = bytes(self.buf[: end + len(self.END)])
            del self.buf[: end + len(self.END)]
            if self.skip_xml:
                self.skip_xml = False
                continue
            if len(event) > self.max_bytes:
                out.append(CotRejected("oversized", f"event of {len(event)} bytes exceeds {self.max_bytes}"))
                continue
            out.append(event)
