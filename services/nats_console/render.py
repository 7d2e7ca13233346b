"""How a stored message is shown: text (escaped by the templates), pretty JSON, or hex.

Payloads are user data: nothing here produces markup; templates autoescape it all.
The payload goes through the same formatter as KV values and dead letters
(``services.nats_console.values.format_value``): non-UTF-8 as hex, long payloads cut with a
note, JSON too deep to re-indent shown as text, lone surrogates escaped — so no stored
message can make a page fail.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from fabric.messages import DETAIL_BYTES, PREVIEW_CHARS, StoredMsg
from services.nats_console.values import clean_text, format_value

Kind = Literal["json", "text", "binary", "empty"]
MAX_HEADERS = 100  # headers shown per message
MAX_HEADER_CHARS = 4096  # characters of one header value shown


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


def view(msg: StoredMsg, limit: int = DETAIL_BYTES) -> MessageView:
    """Classify and format ``msg`` for display (``limit`` bytes of payload at most)."""
    value = format_value(msg.data, limit=limit, sort_keys=False, preview_chars=PREVIEW_CHARS)
    pairs = ((clean_text(str(k))[:256], clean_text(str(v))[:MAX_HEADER_CHARS]) for k, v in msg.headers.items())
    headers = sorted(pairs)[:MAX_HEADERS]
    return MessageView(
        seq=msg.seq,
        subject=clean_text(msg.subject),
        time=_time(msg.time),
        size=value.size,
        headers=headers,
        kind=value.kind,
        body=value.body,
        preview=value.preview,
        truncated=value.truncated,
        shown_bytes=value.shown_bytes,
    )
