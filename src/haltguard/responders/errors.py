"""Errors of the responders domain, each with a stable code and the HTTP status it maps to.

The service raises them; the views render ``{"error": {"code", "message"}}``; the CLI
prints the message. Every message says what was wrong and what to do.
"""

from __future__ import annotations

from typing import ClassVar


class RespondersError(ValueError):
    code: ClassVar[str] = "invalid_input"
    http_status: ClassVar[int] = 422

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInputError(RespondersError):
    code = "invalid_input"
    http_status = 422


class NotFoundError(RespondersError):
    code = "not_found"
    http_status = 404


class ConflictError(RespondersError):
    code = "conflict"
    http_status = 409


class AckRefusedError(RespondersError):
    """A signed link that cannot acknowledge this page (forged, expired, other page)."""

    code = "ack_refused"
    http_status = 403
