"""How a stored value is shown and compared: pretty JSON, text, or hex; line diffs.

Values are user data: nothing here produces markup, the templates escape every string.
Non-UTF-8 values are shown as hex; long ones are cut with a note saying so; JSON too
deep to re-indent is shown as text; lone surrogates are escaped. Nothing here raises
on content, so no stored value can make a page fail.
"""

from __future__ import annotations

import difflib
import json
from typing import Literal

import msgspec

DETAIL_BYTES = 64 * 1024  # value bytes shown; the rest is cut with a note
HEX_BYTES = 4 * 1024  # binary values shown as hex up to this many bytes
MAX_DIFF_LINES = 2000  # diff lines shown; a longer diff is cut with a note
PREVIEW_CHARS = 120
MAX_PRETTY_CHARS = 256 * 1024  # pretty-printed JSON longer than this (and than twice the input) is shown as text

Kind = Literal["json", "text", "binary", "empty"]
LineKind = Literal["add", "del", "ctx", "hunk"]


class ValueView(msgspec.Struct, frozen=True, kw_only=True):
    """A value ready for a template."""

    kind: Kind
    body: str  # pretty JSON, text, or a hex dump (maybe cut)
    preview: str  # one line
    size: int
    truncated: bool
    shown_bytes: int


class DiffLine(msgspec.Struct, frozen=True):
    """One line of a unified diff (``kind`` picks the colour)."""

    kind: LineKind
    text: str


class Diff(msgspec.Struct, frozen=True):
    """A line diff between two values."""

    lines: list[DiffLine]
    identical: bool
    truncated: bool


def hex_dump(data: bytes) -> str:
    """``offset  hex bytes  ascii`` rows of 16 bytes."""
    rows = []
    for off in range(0, len(data), 16):
        chunk = data[off : off + 16]
        rows.append(f"{off:08x}  {chunk.hex(' '):<47}  " + "".join(chr(b) if 32 <= b < 127 else "." for b in chunk))
    return "\n".join(rows)


def clean_text(text: str) -> str:
    """``text`` with lone surrogates (from JSON ``\\ud800`` escapes) written as ``\\ud800``.

    A lone surrogate cannot be encoded as UTF-8, so a page containing one could not be sent.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def pretty_json(text: str, sort_keys: bool = False) -> str | None:
    """``text`` re-indented as JSON, or ``None`` when it is not JSON or cannot be shown as such.

    Deeply nested values (Python's recursion limit) and values whose indentation would
    blow up past ``MAX_PRETTY_CHARS`` are shown as the plain text they are instead.
    """
    try:
        pretty = json.dumps(json.loads(text), indent=2, ensure_ascii=False, sort_keys=sort_keys)
    except (ValueError, TypeError, RecursionError):
        return None
    if len(pretty) > max(MAX_PRETTY_CHARS, 2 * len(text)):
        return None
    return clean_text(pretty)


def format_value(
    data: bytes | None, limit: int = DETAIL_BYTES, sort_keys: bool = True, preview_chars: int = PREVIEW_CHARS
) -> ValueView:
    """Classify and format ``data`` (at most ``limit`` bytes of it are shown).

    Never raises on content: invalid UTF-8 is shown as hex, deep or huge JSON as text,
    lone surrogates escaped, and every string it returns can be encoded as UTF-8.
    """
    data = data or b""
    if not data:
        return ValueView(kind="empty", body="", preview="(empty)", size=0, truncated=False, shown_bytes=0)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        shown = min(len(data), HEX_BYTES)
        preview = data[:24].hex(" ") + (" …" if len(data) > 24 else "")
        return ValueView(
            kind="binary",
            body=hex_dump(data[:shown]),
            preview=preview,
            size=len(data),
            truncated=len(data) > shown,
            shown_bytes=shown,
        )
    flat = " ".join(text[: preview_chars * 2].split())
    preview = flat[:preview_chars] + ("…" if len(flat) > preview_chars or len(text) > preview_chars * 2 else "")
    if len(data) > limit:
        # Cut on a byte budget, then drop a half character at the edge.
        body = data[:limit].decode("utf-8", "ignore")
        return ValueView(kind="text", body=body, preview=preview, size=len(data), truncated=True, shown_bytes=limit)
    pretty = pretty_json(text, sort_keys)
    return ValueView(
        kind="text" if pretty is None else "json",
        body=text if pretty is None else pretty,
        preview=preview,
        size=len(data),
        truncated=False,
        shown_bytes=len(data),
    )


def comparable_text(data: bytes | None) -> str:
    """The text a diff compares: pretty JSON with sorted keys, plain text, or a hex dump."""
    view = format_value(data, limit=DETAIL_BYTES)
    return view.body


def line_diff(before: bytes | None, after: bytes | None, before_label: str, after_label: str) -> Diff:
    """A unified line diff of two values (pretty-printed first so JSON diffs by field)."""
    a = comparable_text(before).splitlines()
    b = comparable_text(after).splitlines()
    if a == b:
        return Diff([], identical=True, truncated=False)
    lines: list[DiffLine] = []
    truncated = False
    for raw in difflib.unified_diff(a, b, fromfile=before_label, tofile=after_label, lineterm="", n=3):
        if len(lines) >= MAX_DIFF_LINES:
            truncated = True
            break
        if raw.startswith(("---", "+++")):
            continue
        if raw.startswith("@@"):
            lines.append(DiffLine("hunk", raw))
        elif raw.startswith("+"):
            lines.append(DiffLine("add", raw))
        elif raw.startswith("-"):
            lines.append(DiffLine("del", raw))
        else:
            lines.append(DiffLine("ctx", raw))
    return Diff(lines, identical=False, truncated=truncated)


def json_object(data: bytes | None) -> dict[str, object] | None:
    """``data`` as a JSON object, or ``None`` when it is not one (for audit diffs)."""
    if not data:
        return None
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
