"""``overwatch cot send`` puts a position report on the wire; a bad URL is a clear error."""

from __future__ import annotations

import socket

import pytest

from app.cli import main
from services.cot.event import CotEvent
from services.cot.parse import parse


@pytest.mark.parametrize("proto", ["0", "1"])
def test_cot_send_delivers_a_report(proto: str, tmp_path: object) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        url = f"udp://127.0.0.1:{sock.getsockname()[1]}?tak_proto={proto}"
        args = ["cot", "--env-file", "/nonexistent", "send", url, "--lat", "37.4", "--lon", "-122.1", "--type", "a-h-G"]
        assert main(args) == 0
        event = parse(sock.recv(65535), 65536)
    assert isinstance(event, CotEvent)
    assert (event.uid, event.type, event.lat, event.lon) == ("overwatch-check", "a-h-G", 37.4, -122.1)


def test_cot_send_with_a_bad_url_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cot", "--env-file", "/nonexistent", "send", "http://example.org", "--lat", "1", "--lon", "1"]) == 2
    assert "scheme must be one of" in capsys.readouterr().out
