"""The application services, built once per process after the runtime has started."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from jinja2 import Environment

from app.registry import RegistryService
from app.templating import build_environment

if TYPE_CHECKING:
    from app.runtime import Runtime


@dataclass
class Services:
    """Everything handlers and workers call into (one instance per process)."""

    registry: RegistryService
    templates: Environment


def build_services(rt: Runtime) -> Services:
    """Construct every service from the started runtime's connections."""
    return Services(
        registry=RegistryService(rt.kv_registry, rt.js, rt.db, rt.hub),
        templates=build_environment(),
    )
