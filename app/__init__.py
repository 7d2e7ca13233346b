"""Constellation Overwatch: the composition root (CLI, runtime, wiring of services, workers and HTTP)."""

from __future__ import annotations

from core import __version__

__all__ = ["__version__"]
