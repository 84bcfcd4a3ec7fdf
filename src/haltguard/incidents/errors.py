"""What can go wrong with an incident request: :class:`IncidentError`, the domain's one base
of :class:`~haltguard.common.errors.HaltguardError`, which the API and CLI turn into messages."""

from __future__ import annotations

from haltguard.common.errors import ErrorKind, HaltguardError

__all__ = ["ErrorKind", "IncidentError", "not_found"]


class IncidentError(HaltguardError):
    """A refused request. ``code`` is stable for programs; ``message`` says what to do next."""

    def __init__(self, kind: ErrorKind, code: str, message: str) -> None:
        super().__init__(message, kind=kind, code=code)


def not_found(what: str, key: object) -> IncidentError:
    return IncidentError(
        ErrorKind.NOT_FOUND, f"{what}_not_found", f"no {what.replace('_', ' ')} {key}"
    )
