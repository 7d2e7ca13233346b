"""The Jinja environment (autoescape on), its filters and globals, and partial rendering.

One ``Environment`` serves full pages, HTMX fragments and SSE events, so a partial
renders identically in all three.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import msgspec
from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context, select_autoescape
from jinja2.runtime import Context

from core import __version__
from core.timefmt import epoch_ms, parse_time

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = ROOT / "templates"
STATIC_DIR = ROOT / "static"


@lru_cache(maxsize=256)
def _asset_hash(relpath: str) -> str:
    try:
        return hashlib.sha256((STATIC_DIR / relpath).read_bytes()).hexdigest()[:10]
    except OSError:
        return __version__


def static_url(relpath: str) -> str:
    """``/static/<relpath>?v=<content hash>`` so browsers cache assets safely."""
    return f"/static/{relpath}?v={_asset_hash(relpath)}"


def ago(value: Any, now: datetime | None = None) -> str:
    """Human "n s ago" for an ISO timestamp or epoch milliseconds; "never" when missing."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = datetime.fromtimestamp(value / 1000, UTC) if value > 0 else None
    when = parse_time(value)
    if when is None:
        return "never"
    seconds = max(0, int(((now or datetime.now(UTC)) - when).total_seconds()))
    if seconds < 60:
        return f"{seconds}s ago"
    if seconds < 3600:
        return f"{seconds // 60}m ago"
    if seconds < 86400:
        return f"{seconds // 3600}h ago"
    return f"{seconds // 86400}d ago"


def num(value: Any, digits: int = 1, unit: str = "") -> str:
    """Format a number with ``digits`` decimals, or an en dash when missing."""
    if value is None or isinstance(value, bool):
        return "–"
    try:
        text = f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return "–"
    return f"{text}{unit}"


def scope_rows(data: Any) -> list[tuple[str, str]]:
    """One telemetry scope's leaf fields as ``(label, text)`` rows: nested mappings, lists of mappings
    and the scope's own ``timestamp`` are left out; coordinates get 4 decimals, other numbers 2.

    Done here rather than in a template macro: the telemetry region is re-rendered on every
    state revision of a followed entity, and the per-field template tests were most of its cost.
    """
    if not isinstance(data, Mapping):
        return []
    rows: list[tuple[str, str]] = []
    for key, value in data.items():
        if key == "timestamp" or isinstance(value, Mapping):
            continue
        if isinstance(value, (list, tuple)) and value and isinstance(value[0], Mapping):
            continue
        label = str(key).replace("_", " ")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            rows.append((label, num(value, 4 if key in ("latitude", "longitude") else 2)))
        else:
            rows.append((label, str(value)))
    return rows


def json_dumps(obj: Any, **kwargs: Any) -> str:
    """``tojson``'s encoder: msgspec (keys sorted, as the default policy asks), the standard library
    for what msgspec cannot encode; the raw-state view renders on every revision of a followed entity."""
    try:
        data = msgspec.json.encode(obj, order="sorted" if kwargs.get("sort_keys") else None)
    except (TypeError, msgspec.EncodeError):
        return json.dumps(obj, **kwargs)
    indent = kwargs.get("indent")
    return (msgspec.json.format(data, indent=indent) if indent else data).decode()


_PLAIN = re.compile(r"[A-Za-z0-9_-]+")


def urlseg(value: Any) -> str:
    """Percent-encode ``value`` as one URL path segment or query value (nothing is left "safe").

    Every id, key, subject or name that goes into a URL in a template passes through
    this, so ``/``, ``..``, ``?``, ``#``, ``&`` and ``%`` in data (from devices, say) can
    never change which route or query a link or form addresses.
    """
    text = str(value)
    if _PLAIN.fullmatch(text):  # the common case (entity ids, stream names): nothing to encode
        return text
    text = quote(text, safe="", errors="surrogatepass")
    if text in (".", ".."):
        # Browsers resolve a "." or ".." segment (even written %2E%2E) before sending the request;
        # double-encoded, it reaches the server as the literal text "%2E%2E" and names nothing.
        return text.replace(".", "%252E")
    return text


LINK_SCHEMES = frozenset({"http", "https", "rtsp", "rtsps", "ws", "wss"})


def safe_link(value: Any) -> str:
    """``value`` when it is an absolute URL with a streaming/web scheme, else '' (no ``javascript:``)."""
    text = str(value or "").strip()
    try:
        parts = urlsplit(text)
    except ValueError:
        return ""
    return text if parts.scheme.lower() in LINK_SCHEMES and parts.netloc else ""


@pass_context
def current_principal(ctx: Context) -> Any:
    """The signed-in caller of the page being rendered (anonymous outside a request)."""
    from services.auth.principal import ANONYMOUS

    request = ctx.get("request")
    value = request.state.get("principal") if request is not None else None
    return value if value is not None else ANONYMOUS


@pass_context
def csrf(ctx: Context) -> str:
    """The CSRF token of the current session ('' outside a signed-in request)."""
    request = ctx.get("request")
    return str(request.state.get("csrf", "")) if request is not None else ""


def build_environment(directory: Path = TEMPLATES_DIR) -> Environment:
    """The single Jinja environment: autoescape everywhere, strict undefined names.

    Templates ship with the package and never change while the server runs, so they are not
    checked for changes (``auto_reload`` would stat each file, imports included, on every
    render: thousands of times a second with many live streams).
    """
    env = Environment(
        loader=FileSystemLoader(str(directory)),
        auto_reload=False,
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(ago=ago, epoch_ms=epoch_ms, num=num, urlseg=urlseg, safe_link=safe_link, scope_rows=scope_rows)
    env.policies["json.dumps_function"] = json_dumps
    env.globals.update(static_url=static_url, version=__version__, principal=current_principal, csrf=csrf)
    env.globals["edge_link"] = lambda _edge: None  # the runtime puts in its link probes (fabric/links.py)
    return env
