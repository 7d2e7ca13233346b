"""The ``overwatch`` command line: serve, detect, simulate, mavlink, user, apikey, version."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

from app.cmdline import env_file
from core import __version__
from core.settings import ConfigError, Settings, load_settings

EXIT_CONFIG = 2
EXIT_STARTUP = 1


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", dest="data_dir", help="data directory (OVERWATCH_DATA_DIR)")
    p.add_argument("--log-level", dest="log_level", help="DEBUG, INFO, WARNING, ERROR (LOG_LEVEL)")
    p.add_argument("--log-format", dest="log_format", choices=["console", "json"], help="LOG_FORMAT")
    p.add_argument("--env-file", dest="env_file", default=".env", help="read settings from this file (default .env)")


def _add_serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="HTTP bind address (HOST)")
    p.add_argument("--port", type=int, help="HTTP port (PORT)")
    p.add_argument("--nats-url", dest="nats_url", help="external NATS server(s) (NATS_URL)")
    p.add_argument("--nats-host", dest="nats_host", help="embedded NATS bind address (NATS_HOST)")
    p.add_argument("--nats-port", dest="nats_port", type=int, help="embedded NATS port (NATS_PORT)")
    p.add_argument("--demo", action="store_const", const=True, dest="demo", help="seed a demo organisation and fleet")
    p.add_argument("--tls-cert", dest="tls_cert", help="PEM certificate: serve HTTPS (OVERWATCH_TLS_CERT)")
    p.add_argument("--tls-key", dest="tls_key", help="PEM private key of --tls-cert (OVERWATCH_TLS_KEY)")
    p.add_argument(
        "--tls-self-signed",
        action="store_const",
        const=True,
        dest="tls_self_signed",
        help="serve HTTPS with a self-signed certificate made once in the data dir (OVERWATCH_TLS_SELF_SIGNED)",
    )


# name, help, and where its arguments are declared ("module:function"; "" = this module's serve flags).
SUBCOMMANDS: tuple[tuple[str, str, str], ...] = (
    ("serve", "run the server (HTTP, workers, embedded NATS)", ""),
    ("simulate", "publish simulated fleet telemetry and answer commands", "app.simulate_cmd:add_arguments"),
    ("user", "manage local user accounts", "app.admin_cmd:add_user_arguments"),
    ("apikey", "manage API keys", "app.admin_cmd:add_apikey_arguments"),
    ("detect", "run the detection worker (camera → detections, threats, video)", "app.detect_cmd:add_arguments"),
    ("mavlink", "run the MAVLink bridge (drones ↔ NATS; docs/mavlink.md)", "app.mavlink_cmd:add_arguments"),
    ("cot", "check a TAK set-up: send a CoT report or print what arrives (docs/tak.md)", "app.cot_cmd:add_arguments"),
)


def _declarer(where: str) -> Callable[[argparse.ArgumentParser], None]:
    if not where:
        return _add_serve_arguments
    module, function = where.split(":")
    declare: Callable[[argparse.ArgumentParser], None] = getattr(importlib.import_module(module), function)
    return declare


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; with ``only``, just that subcommand's arguments are declared.

    Declaring a subcommand imports its module (the server's imports take about a second);
    a command line names one subcommand, so only that one is imported (``overwatch apikey``
    starts in a fraction of the time).
    """
    parser = argparse.ArgumentParser(
        prog="overwatch", description="Constellation Overwatch: C4ISR console for the edge."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, text, where in SUBCOMMANDS:
        command = sub.add_parser(name, help=text)
        if only is None or name == only:
            _add_common(command)
            _declarer(where)(command)
    sub.add_parser("version", help="print the version")
    return parser


def settings_from_args(args: argparse.Namespace, fields: Sequence[str]) -> Settings:
    """Settings with the given argparse attributes as overrides (flags beat env)."""
    overrides: dict[str, Any] = {f: getattr(args, f, None) for f in fields}
    return load_settings(overrides, dotenv=env_file(args))


def cmd_serve(args: argparse.Namespace) -> int:
    """``overwatch serve``."""
    from app.bootstrap import run_server

    fields = ["host", "port", "data_dir", "nats_url", "nats_host", "nats_port", "demo", "log_level", "log_format"]
    settings = settings_from_args(args, [*fields, "tls_cert", "tls_key", "tls_self_signed"])
    return run_server(settings)


def cmd_simulate(args: argparse.Namespace) -> int:
    """``overwatch simulate``."""
    from app import simulate_cmd

    settings = settings_from_args(args, ["data_dir", "log_level", "log_format"])
    return simulate_cmd.run(settings, args)


def _admin(which: str, args: argparse.Namespace) -> int:
    from app import admin_cmd

    settings = settings_from_args(args, ["data_dir", "log_level", "log_format"])
    return admin_cmd.run_user(settings, args) if which == "user" else admin_cmd.run_apikey(settings, args)


def cmd_detect(args: argparse.Namespace) -> int:
    """``overwatch detect``."""
    from app import detect_cmd

    settings = settings_from_args(args, ["data_dir", "log_level", "log_format"])
    return detect_cmd.run(args, settings.log_level, settings.log_format)


def cmd_cot(args: argparse.Namespace) -> int:
    """``overwatch cot``."""
    from app import cot_cmd

    settings = settings_from_args(args, ["data_dir", "log_level", "log_format"])
    return cot_cmd.run(settings, args)


def cmd_mavlink(args: argparse.Namespace) -> int:
    """``overwatch mavlink``."""
    from app import mavlink_cmd

    settings = settings_from_args(args, ["data_dir", "log_level", "log_format"])
    return mavlink_cmd.run(args, settings)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "serve": cmd_serve,
    "detect": cmd_detect,
    "simulate": cmd_simulate,
    "mavlink": cmd_mavlink,
    "user": lambda a: _admin("user", a),
    "apikey": lambda a: _admin("apikey", a),
    "cot": lambda a: cmd_cot(a),
    "version": lambda _a: print(f"overwatch {__version__}") or 0,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``overwatch`` console script."""
    words = list(sys.argv[1:] if argv is None else argv)
    named = {name for name, _text, _where in SUBCOMMANDS}
    parser = build_parser(words[0] if words and words[0] in named else "")
    args = parser.parse_args(words)
    if not args.command:
        parser.print_help()
        return EXIT_CONFIG
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"overwatch: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
