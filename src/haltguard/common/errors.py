"""The one error model: every refusal a domain raises is a :class:`HaltguardError`.

An error carries what a person and a program need, and nothing of the web:

- ``kind``: what sort of refusal (:class:`ErrorKind`); the HTTP layer alone maps it to a
  status code (``haltguard.web.errors``), the CLI prints the same message;
- ``code``: a stable machine string (``market_halted``, ``not_found``) programs branch on;
- ``message``: what was wrong, in English, usually with what to do about it;
- ``next_step``: what to do next, when it is said apart from the message;
- ``message_ja``: the Japanese text, where the domain has one;
- ``headers``: response headers the refusal needs (``Retry-After``, ``WWW-Authenticate``);
- ``details``: extra machine-readable fields shown beside ``code`` and ``message`` (the
  venue's ``seq`` of a refused command).

A domain has one base (``StatusError(HaltguardError)``) and raises it, or a subclass that
fixes ``kind`` and ``code`` as class attributes. Service layers import this module, never a
web framework.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class ErrorKind(StrEnum):
    """What sort of refusal an error is; each has exactly one HTTP status (web/errors.py)."""

    BAD_REQUEST = "bad_request"
    """The request cannot be used as sent (a damaged or expired signed link)."""
    UNAUTHENTICATED = "unauthenticated"
    """Nobody is signed in, or the credentials are wrong."""
    FORBIDDEN = "forbidden"
    """Signed in, but not allowed to do this (role, network, token)."""
    NOT_FOUND = "not_found"
    """The thing named does not exist."""
    CONFLICT = "conflict"
    """The request is valid but the current state refuses it."""
    INVALID = "invalid"
    """A value is wrong; the message names it and says what is accepted."""
    TOO_MANY = "too_many"
    """Too many requests; ``Retry-After`` says when to try again."""
    INTERNAL = "internal"
    """A defect on our side, contained (a quarantined command); nothing was applied."""
    VENUE = "venue"
    """The venue (or another system we command) did not take the request."""
    UNAVAILABLE = "unavailable"
    """A part this request needs is not running now (overload, stopped, unreachable)."""
    TIMEOUT = "timeout"
    """The request was taken but its outcome is not known in time."""


class HaltguardError(Exception):
    """A refused request, said once for the API, the CLI and the logs.

    Subclasses may fix ``kind`` and ``code`` as class attributes; a call may override both.
    ``str(error)`` is the English message.
    """

    kind: ErrorKind = ErrorKind.INVALID
    code: str = "invalid_input"

    def __init__(
        self,
        message: str,
        *,
        kind: ErrorKind | None = None,
        code: str | None = None,
        next_step: str | None = None,
        message_ja: str | None = None,
        headers: Mapping[str, str] | None = None,
        details: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind
        if code is not None:
            self.code = code
        self.message = message
        self.next_step = next_step
        self.message_ja = message_ja
        self.headers: dict[str, str] | None = dict(headers) if headers else None
        self.details: dict[str, object] = dict(details) if details else {}

    def __str__(self) -> str:
        return self.message
