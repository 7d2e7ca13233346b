"""Shared helpers for contracts: UTC timestamps, ids, strict-but-lenient decoding."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec

T = TypeVar("T")

ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"


def utc_now() -> str:
    """Current time as ISO 8601 UTC with milliseconds and ``Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id() -> str:
    """A new random id (UUID4 text), valid as a subject token."""
    return str(uuid.uuid4())


class DecodeError(ValueError):
    """A payload is not valid JSON or does not match its contract; ``str()`` says where."""


def decode(data: bytes | str, type_: type[T]) -> T:
    """Decode JSON into ``type_``; unknown fields are ignored, wrong types rejected."""
    try:
        return msgspec.json.decode(data, type=type_)
    except msgspec.ValidationError as exc:
        raise DecodeError(f"schema: {exc}") from None
    except msgspec.DecodeError as exc:
        raise DecodeError(f"invalid JSON: {exc}") from None
    except UnicodeDecodeError as exc:  # msgspec raises it for bytes that are not UTF-8
        raise DecodeError(f"invalid JSON: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except RecursionError:
        raise DecodeError("JSON nested too deeply") from None


def decode_object(data: bytes | str) -> dict[str, Any]:
    """Decode JSON that must be an object."""
    try:
        value = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise DecodeError(f"invalid JSON: {exc}") from None
    except UnicodeDecodeError as exc:  # msgspec raises it for bytes that are not UTF-8
        raise DecodeError(f"invalid JSON: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except RecursionError:
        raise DecodeError("JSON nested too deeply") from None
    if not isinstance(value, dict):
        raise DecodeError(f"expected a JSON object, got {type(value).__name__}")
    return value


def validate(value: Any, type_: type[T], where: str = "") -> T:
    """Check builtins ``value`` against ``type_`` (types only; extra keys allowed)."""
    try:
        return msgspec.convert(value, type_)
    except msgspec.ValidationError as exc:
        prefix = f"{where}: " if where else ""
        raise DecodeError(f"{prefix}{exc}") from None


encoder = msgspec.json.Encoder()


def encode(value: Any) -> bytes:
    """JSON-encode a Struct or builtins."""
    return encoder.encode(value)
