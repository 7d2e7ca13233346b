""""Last seen" is rendered readable by the server, so rows swapped faster than the page's timer never show epochs."""

from __future__ import annotations

from datetime import UTC, datetime

from web.templating import ago


def test_ago_reads_epoch_milliseconds_and_iso_alike() -> None:
    now = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
    ms = int(datetime(2026, 11, 26, 11, 59, 18, tzinfo=UTC).timestamp() * 1000)
    assert ago(ms, now) == "42s ago"
    assert ago("2026-11-26T11:57:00Z", now) == "3m ago"
    assert ago(0, now) == "never" and ago(None, now) == "never"
