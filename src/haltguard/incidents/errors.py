"""What can go wrong with an incident request, as values the API and CLI turn into messages."""

from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    NOT_FOUND = "not_found"
    INVALID = "invalid"
    CONFLICT = "conflict"
    FORBIDDEN = "forbidden"
    VENUE = "venue"


class IncidentError(Exception):
    """A refused request. ``code`` is stable for programs; ``message`` says what to do next."""

    def __init__(self, kind: ErrorKind, code: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.code = code
        self.message = message


def not_found(what: str, key: object) -> IncidentError:
    return IncidentError(
        ErrorKind.NOT_FOUND, f"{what}_not_found", f"no {what.replace('_', ' ')} {key}"
    )
