"""How a stored message is shown: text (escaped by the templates), pretty JSON, or hex.

Payloads are user data: nothing here produces markup; templates autoescape it all.
Non-UTF-8 payloads are shown as hex, long ones are cut with a note saying so.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Literal

import msgspec

from app.nats_console.messages import DETAIL_BYTES, HEX_BYTES, PREVIEW_CHARS, StoredMsg

Kind = Literal["json", "text", "binary", "empty"]


class MessageView(msgspec.Struct, frozen=True, kw_only=True):
    """A message ready for a template."""

    seq: int
    subject: str
    time: str  # ISO 8601 with milliseconds, UTC
    size: int
    headers: list[tuple[str, str]]
    kind: Kind
    body: str  # pretty JSON, text, or hex dump (maybe cut)
    preview: str  # one line for the list
    truncated: bool  # body was cut
    shown_bytes: int


def _time(when: datetime | None) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z") if when else ""


def _hex(data: bytes) -> str:
    rows = []
    for off in range(0, len(data), 16):
        chunk = data[off : off + 16]
        rows.append(f"{off:08x}  {chunk.hex(' '):<47}  " + "".join(chr(b) if 32 <= b < 127 else "." for b in chunk))
    return "\n".join(rows)


def view(msg: StoredMsg, limit: int = DETAIL_BYTES) -> MessageView:
    """Classify and format ``msg`` for display (``limit`` bytes of payload at most)."""
    data = msg.data
    kind: Kind
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if not data:
        kind, body, preview, shown, cut = "empty", "", "(empty)", 0, False
    elif text is None:
        shown = min(len(data), HEX_BYTES)
        kind, body, cut = "binary", _hex(data[:shown]), len(data) > shown
        preview = data[:24].hex(" ") + (" …" if len(data) > 24 else "")
    else:
        kind, body, shown, cut = "text", text, len(data), False
        if len(data) <= limit:
            try:
                body = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
                kind = "json"
            except ValueError:
                pass
        else:
            # Cut on a byte budget, then drop a half character at the edge.
            body = data[:limit].decode("utf-8", "ignore")
            shown, cut = limit, True
        flat = " ".join(text[: PREVIEW_CHARS * 2].split())
        preview = flat[:PREVIEW_CHARS] + ("…" if len(flat) > PREVIEW_CHARS or len(text) > PREVIEW_CHARS * 2 else "")
    return MessageView(
        seq=msg.seq,
        subject=msg.subject,
        time=_time(msg.time),
        size=len(data),
        headers=sorted(msg.headers.items()),
        kind=kind,
        body=body,
        preview=preview,
        truncated=cut,
        shown_bytes=shown,
    )
