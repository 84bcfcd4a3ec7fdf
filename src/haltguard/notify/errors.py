"""Errors the notify domain answers with: :class:`NotifyError`, the domain's one base of
:class:`~haltguard.common.errors.HaltguardError`; each has a stable code, a kind the web
layer maps to the HTTP status, and a message that says what to do next."""

from __future__ import annotations

from haltguard.common.errors import ErrorKind, HaltguardError


class NotifyError(HaltguardError):
    kind = ErrorKind.INVALID
    code = "invalid_input"

    def __init__(self, message: str) -> None:
        super().__init__(message)


class InvalidInputError(NotifyError):
    pass


class NotFoundError(NotifyError):
    kind = ErrorKind.NOT_FOUND
    code = "not_found"


class LinkRefusedError(NotifyError):
    """A confirm or unsubscribe link that is forged, damaged, expired or superseded."""

    kind = ErrorKind.BAD_REQUEST
    code = "link_refused"


class ConfirmationNotSentError(NotifyError):
    """The mail server did not take the confirmation email; the subscriber may try again."""

    kind = ErrorKind.UNAVAILABLE
    code = "confirmation_not_sent"
