"""Domain errors every layer raises; each carries the HTTP status it maps to (``web.errors`` does the mapping)."""

from __future__ import annotations


class AppError(Exception):
    """Base class: carries an HTTP status and a human-readable detail."""

    status_code = 400
    title = "Bad Request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Invalid(AppError):
    """The request is well-formed but its content is not acceptable."""

    status_code = 422
    title = "Unprocessable Content"


class NotFound(AppError):
    """The addressed resource does not exist (or is not visible to the caller)."""

    status_code = 404
    title = "Not Found"


class Conflict(AppError):
    """The request conflicts with the current state (duplicate id, stale revision)."""

    status_code = 409
    title = "Conflict"


class Unavailable(AppError):
    """A dependency (NATS, the database) is temporarily unavailable."""

    status_code = 503
    title = "Service Unavailable"


class InvalidMessage(Exception):
    """The message can never be processed; it goes to the dead-letter stream."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransientError(Exception):
    """Processing failed for a reason that may pass (conflict, NATS hiccup); retry later."""
