"""What the process subcommands share: flag tables (``--flag`` → settings field) and stopping on a signal."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from typing import Any

# flag (without "--") -> (settings field, type, help)
Flags = dict[str, tuple[str, type, str]]


def add_flags(p: argparse.ArgumentParser, flags: Flags) -> None:
    """One optional ``--flag`` per row of ``flags``."""
    for flag, (dest, kind, text) in flags.items():
        p.add_argument(f"--{flag}", dest=dest, type=kind, help=text)


def flag_overrides(args: argparse.Namespace, flags: Flags) -> dict[str, Any]:
    """The settings fields of ``flags`` as given on the command line (``None``: not given, the environment decides)."""
    return {dest: getattr(args, dest, None) for dest, *_ in flags.values()}


def env_file(args: argparse.Namespace) -> Path:
    """The ``--env-file`` (default ``.env``)."""
    return Path(getattr(args, "env_file", ".env"))


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (call inside the running loop)."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    return stopping
