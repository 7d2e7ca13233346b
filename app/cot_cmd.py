"""``overwatch cot``: check a TAK set-up from the box — send a position report, or listen and print.

``overwatch cot send tcp://tak.example.org:8087 --lat 37.43 --lon -122.17`` sends one
report (PyTAK transport, the same ``PYTAK_TLS_*`` settings as the gateway);
``overwatch cot listen udp://239.2.3.1:6969`` prints each event heard, read by the
gateway's hardened parser (refusals printed with their reason). Neither needs the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time

from app.logs import setup_logging
from core.cot_urls import CotConfigError, parse_listen_urls, parse_out_urls
from core.settings import Settings
from services.cot.event import CotEvent, to_proto, to_xml
from services.cot.parse import CotRejected, Ping, parse
from services.cot.transport import Listener, OutLink


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``send`` and ``listen``."""
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    send = actions.add_parser("send", help="send one CoT position report (PyTAK transport)")
    send.add_argument("url", help="destination, e.g. udp://239.2.3.1:6969, tcp://host:8087, tls://host:8089")
    send.add_argument("--uid", default="overwatch-check")
    send.add_argument("--callsign", default="OVERWATCH CHECK")
    send.add_argument("--type", dest="cot_type", default="a-f-G-U-C")
    send.add_argument("--lat", type=float, required=True)
    send.add_argument("--lon", type=float, required=True)
    send.add_argument("--stale", type=float, default=60.0, help="seconds the report is valid")
    send.add_argument("--tak-proto", type=int, choices=(0, 1), default=None, help="0 XML, 1 TAK protocol v1")
    listen = actions.add_parser("listen", help="print CoT heard on udp://HOST:PORT or tcp://HOST:PORT")
    listen.add_argument("url")
    listen.add_argument("--seconds", type=float, default=0.0, help="stop after this long (0: until Ctrl-C)")


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Run the action; 2 for a bad URL, 1 when sending failed."""
    setup_logging(settings.log_level, settings.log_format)
    try:
        if args.action == "send":
            return asyncio.run(_send(settings, args))
        return asyncio.run(_listen(settings, args))
    except CotConfigError as exc:
        print(f"overwatch cot: {exc}")
        return 2


async def _send(settings: Settings, args: argparse.Namespace) -> int:
    proto = settings.tak_proto if args.tak_proto is None else args.tak_proto
    target = parse_out_urls(args.url, proto)[0]
    now = time.time()
    event = CotEvent(
        uid=args.uid,
        type=args.cot_type,
        time=now,
        start=now,
        stale=now + args.stale,
        lat=args.lat,
        lon=args.lon,
        callsign=args.callsign,
        remarks="sent by overwatch cot send",
    )
    data = to_proto(event, target.stream) if target.tak_proto else to_xml(event)
    tls = {
        "PYTAK_TLS_CLIENT_CERT": settings.pytak_tls_client_cert,
        "PYTAK_TLS_CLIENT_KEY": settings.pytak_tls_client_key,
        "PYTAK_TLS_CLIENT_CAFILE": settings.pytak_tls_client_cafile,
        "PYTAK_TLS_CLIENT_PASSWORD": settings.pytak_tls_client_password,
        "PYTAK_TLS_DONT_VERIFY": "1" if settings.pytak_tls_dont_verify else "",
        "PYTAK_TLS_DONT_CHECK_HOSTNAME": "1" if settings.pytak_tls_dont_check_hostname else "",
        "PYTAK_MULTICAST_LOCAL_ADDR": settings.pytak_multicast_local_addr,
    }
    stop = asyncio.Event()
    link = OutLink(target, tls, lambda _link: None)
    link.offer(data)
    task = asyncio.create_task(link.run(stop))
    deadline = time.monotonic() + 10
    while link.stats.sent == 0 and time.monotonic() < deadline and not task.done():
        await asyncio.sleep(0.05)
    stop.set()
    link.wakeup.set()  # the link's pump waits for work; let it see the stop now
    with contextlib.suppress(Exception):
        await asyncio.wait_for(task, 3)
    if link.stats.sent:
        print(f"sent {len(data)} bytes to {target.url} ({'TAK protocol v1' if target.tak_proto else 'CoT XML'})")
        return 0
    print(f"overwatch cot: nothing sent to {target.url}: {link.stats.last_error or 'no connection'}")
    return 1


async def _listen(settings: Settings, args: argparse.Namespace) -> int:
    target = parse_listen_urls(args.url)[0]

    async def show(data: bytes, source: str, _peer: object) -> None:
        try:
            item = parse(data, settings.cot_max_event_bytes)
        except CotRejected as exc:
            print(f"{source}: refused ({exc.reason}): {exc.detail}")
            return
        if isinstance(item, Ping):
            print(f"{source}: ping from {item.uid}")
            return
        print(
            f"{source}: {item.uid} {item.type} {item.callsign!r} at {item.lat:.6f},{item.lon:.6f}"
            f" stale in {item.stale - time.time():.0f}s",
            flush=True,
        )

    async def refused(exc: CotRejected, _data: bytes, source: str) -> None:
        print(f"{source}: refused ({exc.reason}): {exc.detail}")

    listener = Listener(target, show, refused, settings.cot_max_event_bytes)
    await listener.start()
    print(f"listening on {target.scheme}://{target.host}:{listener.port}")
    try:
        if args.seconds:
            await asyncio.sleep(args.seconds)
        else:
            await asyncio.Event().wait()
    finally:
        await listener.stop()
    return 0
