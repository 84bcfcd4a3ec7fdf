"""Errors of the responders domain: :class:`RespondersError`, the domain's one base of
:class:`~haltguard.common.errors.HaltguardError`, each with a stable code and a kind the web
layer maps to the HTTP status.

The service raises them; the one handler renders ``{"error": {"code", "message"}}``; the
CLI prints the message. Every message says what was wrong and what to do.
"""

from __future__ import annotations

from haltguard.common.errors import ErrorKind, HaltguardError


class RespondersError(HaltguardError, ValueError):
    kind = ErrorKind.INVALID
    code = "invalid_input"

    def __init__(self, message: str) -> None:
        super().__init__(message)


class InvalidInputError(RespondersError):
    kind = ErrorKind.INVALID
    code = "invalid_input"


class NotFoundError(RespondersError):
    kind = ErrorKind.NOT_FOUND
    code = "not_found"


class ConflictError(RespondersError):
    kind = ErrorKind.CONFLICT
    code = "conflict"


class AckRefusedError(RespondersError):
    """A signed link that cannot acknowledge this page (forged, expired, other page)."""

    kind = ErrorKind.FORBIDDEN
    code = "ack_refused"
