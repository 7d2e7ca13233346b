"""The core every layer may import: contracts, topology, settings, errors, clock, topics."""

from __future__ import annotations

__version__ = "0.1.0"
