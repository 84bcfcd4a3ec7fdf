"""Errors of the status page: :class:`StatusError`, the domain's one base of
:class:`~haltguard.common.errors.HaltguardError`, with a stable code and a kind the web
layer maps to the HTTP status; the API answers ``{"error": {"code", "message"}}``, the CLI
prints ``.message``.
"""

from __future__ import annotations

from haltguard.common.errors import ErrorKind, HaltguardError


class StatusError(HaltguardError):
    def __init__(self, kind: ErrorKind, code: str, message: str) -> None:
        super().__init__(message, kind=kind, code=code)


def not_found(what: str, which: object, hint: str) -> StatusError:
    return StatusError(
        ErrorKind.NOT_FOUND, f"{what.replace(' ', '_')}_not_found", f"no {what} {which}; {hint}"
    )


def invalid(code: str, message: str) -> StatusError:
    return StatusError(ErrorKind.INVALID, code, message)


def conflict(code: str, message: str) -> StatusError:
    return StatusError(ErrorKind.CONFLICT, code, message)
