"""The administration pages' common context: the admin tab bar, a flash message or an error."""

from __future__ import annotations

from typing import Any

from litestar.response import Template


def admin_page(
    template: str, tab: str, data: dict[str, Any], extra: dict[str, Any], error_status: int = 400
) -> Template:
    """``template`` on ``tab`` with ``data``, then ``extra`` over it (``flash``, ``error``, what a form made);
    answered with ``error_status`` when ``extra`` carries an error."""
    context = {**data, "active": "admin", "tab": tab, "flash": "", "error": "", **extra}
    return Template(template, context=context, status_code=error_status if extra.get("error") else 200)
