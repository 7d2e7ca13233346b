"""Constellation Overwatch: a real-time C4ISR console for the edge."""

from __future__ import annotations

__version__ = "0.1.0"
