"""The one ASGI ``send`` wrapper that notes a response's status (metrics and tracing both need it)."""

from __future__ import annotations

from typing import Any

from litestar.types import Send


class StatusNoting:
    """Wraps ``send``; ``status`` is the response's status once it has started (500 until then).

    500 stays when the application fails before sending anything, which is what the
    client then gets from the server.
    """

    def __init__(self, send: Send) -> None:
        self.send = send
        self.status = 500

    async def __call__(self, message: Any) -> None:
        """Forward ``message``, noting the status of ``http.response.start``."""
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
        await self.send(message)
